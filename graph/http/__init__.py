"""The HTTP edge: the app's assembly, routes (upload, download, health), transport guards, CORS,
the anonymous cache, rate limits, logs, metrics, GraphiQL."""
