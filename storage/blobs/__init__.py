"""Where bytes live: the store protocols, the spool, the local and the S3 store, and which one a
configuration opens."""
