import { useEffect, useRef, useState } from "preact/hooks";
import { request } from "./api/client";
import { onNotification } from "./api/live";
import { graphql } from "./gql";
import type { NotificationFieldsFragment } from "./gql/graphql";
import { Catalogue } from "./pages/Catalogue";
import { Datasets } from "./pages/Datasets";
import { ModelPage } from "./pages/ModelPage";
import { NotFound } from "./pages/NotFound";
import { Notifications } from "./pages/Notifications";
import { SignIn } from "./pages/SignIn";
import { Upload } from "./pages/Upload";
import { Link, navigate, useRoute } from "./router";
import { signedOut, useSession } from "./session";

const LogOut = graphql(`
  mutation LogOut {
    logOut {
      ok
      userErrors {
        code
        message
      }
    }
  }
`);

function BellIcon() {
  return (
    <svg aria-hidden="true" focusable="false" width="20" height="20" viewBox="0 0 24 24">
      <path
        fill="currentColor"
        d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
      />
    </svg>
  );
}

function Header({ path }: { path: string }) {
  const { token, username, unread } = useSession();
  const current = (to: string) => (path === to ? "page" : undefined);
  return (
    <header class="top">
      <nav aria-label="Main">
        <Link to="/" class="brand">
          lorashelf
        </Link>
        <ul class="nav-links">
          <li>
            <Link to="/" aria-current={current("/")}>
              Models
            </Link>
          </li>
          {token && (
            <>
              <li>
                <Link to="/upload" aria-current={current("/upload")}>
                  Upload
                </Link>
              </li>
              <li>
                <Link to="/datasets" aria-current={current("/datasets")}>
                  My datasets
                </Link>
              </li>
            </>
          )}
        </ul>
        <div class="account">
          {token ? (
            <>
              <Link
                to="/notifications"
                class="bell"
                aria-current={current("/notifications")}
                aria-label={`Notifications: ${unread} unread`}
                data-testid="bell"
              >
                <BellIcon />
                <span class={unread ? "count" : "count zero"} aria-hidden="true" data-testid="unread-count">
                  {unread}
                </span>
              </Link>
              <span class="who">{username ?? ""}</span>
              <button
                type="button"
                class="link-button"
                onClick={async () => {
                  try {
                    await request(LogOut);
                  } finally {
                    signedOut();
                    navigate("/");
                  }
                }}
              >
                Sign out
              </button>
            </>
          ) : (
            <Link to="/signin" aria-current={current("/signin")}>
              Sign in
            </Link>
          )}
        </div>
      </nav>
    </header>
  );
}

/** The newest live notification, announced politely. */
function Toast() {
  const [latest, setLatest] = useState<NotificationFieldsFragment | null>(null);
  useEffect(() => onNotification(setLatest), []);
  return (
    <div class="toast-region" role="status" aria-live="polite">
      {latest && (
        <div class="toast" data-testid="toast">
          <p>{latest.message}</p>
          <button type="button" class="link-button" onClick={() => setLatest(null)}>
            Dismiss
          </button>
        </div>
      )}
    </div>
  );
}

function Page({ path, params }: { path: string; params: URLSearchParams }) {
  if (path === "/") return <Catalogue params={params} />;
  if (path === "/signin" || path === "/signup") return <SignIn mode={path === "/signup" ? "up" : "in"} next={params.get("next")} />;
  const model = path.match(/^\/models\/([^/]+)$/);
  if (model) return <ModelPage key={model[1]} id={decodeURIComponent(model[1]!)} />;
  if (path === "/upload") return <Upload modelId={params.get("model")} />;
  if (path === "/notifications") return <Notifications />;
  if (path === "/datasets") return <Datasets />;
  return <NotFound />;
}

export function App() {
  const { path, params, visit } = useRoute();
  const { token, ended } = useSession();
  const first = useRef(true);

  // A session the server ended (401): to the sign-in page, and back here after it.
  useEffect(() => {
    if (!token && ended && path !== "/signin" && path !== "/signup") {
      const here = location.pathname.replace(import.meta.env.BASE_URL.replace(/\/+$/, ""), "") + location.search;
      navigate(`/signin?next=${encodeURIComponent(here)}`, { replace: true });
    }
  }, [token, ended]);

  // After a visit to another page, focus moves to its heading (once the page has one:
  // most load first), so keyboard and screen reader users start at the new page.
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const main = document.getElementById("main");
    if (!main) return;
    const toHeading = () => {
      const heading = main.querySelector<HTMLElement>("h1");
      heading?.focus();
      return heading !== null;
    };
    if (toHeading()) return;
    main.focus();
    const observer = new MutationObserver(() => {
      if (document.activeElement !== main || toHeading()) observer.disconnect();
    });
    observer.observe(main, { childList: true, subtree: true });
    const timer = setTimeout(() => observer.disconnect(), 10_000);
    return () => {
      observer.disconnect();
      clearTimeout(timer);
    };
  }, [visit]);

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <Header path={path} />
      <main id="main" tabIndex={-1}>
        <Page path={path} params={params} />
      </main>
      <Toast />
    </>
  );
}

