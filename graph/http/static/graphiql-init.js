// lorashelf's GraphiQL page: starts GraphiQL with the explorer plugin.
// Loaded as a same-origin file (the page's CSP allows no inline script), after
// React, ReactDOM, GraphiQL and GraphiQLPluginExplorer (served from /graphiql/vendor).
"use strict";

(function () {
  const WELCOME = `# Welcome to lorashelf's GraphiQL.
#
# Put your token in the Headers tab below as
#   {"Authorization": "Bearer <token>"}
# (signUp and logIn return one). Run a query with Ctrl-Enter or the play button.
#
# For example, the retention policy the upload form shows:

{
  retentionPolicy {
    notice
  }
}
`;

  // The query and variables are kept in the URL (?q=...&variables=...) to share them.
  // Headers never are: they stay in this tab's session storage (shouldPersistHeaders),
  // through reloads, and go when the tab or browser closes, as the web app's sign-in
  // does (web/src/session.ts): a token kept in localStorage outlived the browser and
  // any sign-out, for whoever uses the machine next.
  const parameters = {};
  for (const [key, value] of new URLSearchParams(window.location.search)) {
    if (key === "q" || key === "variables") {
      parameters[key] = value;
    }
  }

  function updateURL(data) {
    Object.assign(parameters, data);
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(parameters)) {
      if (value) {
        search.set(key, value);
      }
    }
    const query = search.toString();
    window.history.replaceState(null, "", query ? "?" + query : window.location.pathname);
  }

  // The page is served by the GraphQL endpoint itself: POST JSON to the same URL.
  const fetcher = GraphiQL.createFetcher({
    url: window.location.origin + window.location.pathname,
  });
  const explorerPlugin = GraphiQLPluginExplorer.explorerPlugin();

  function GraphiQLWithExplorer() {
    const [query, setQuery] = React.useState(parameters.q || WELCOME);
    const [variables, setVariables] = React.useState(parameters.variables);

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      plugins: [explorerPlugin],
      query: query,
      variables: variables,
      onEditQuery: function (value) {
        setQuery(value);
        updateURL({ q: value });
      },
      onEditVariables: function (value) {
        setVariables(value);
        updateURL({ variables: value });
      },
      inputValueDeprecation: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      storage: window.sessionStorage,
    });
  }

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQLWithExplorer));
})();
