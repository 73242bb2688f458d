import { useEffect, useState } from "preact/hooks";
import { accepted, request, UserErrors } from "../api/client";
import { Field } from "../components/Field";
import { graphql } from "../gql";
import { useTitle } from "../hooks";
import { Link, navigate } from "../router";
import { endedShown, signedIn, useSession } from "../session";

const SignUp = graphql(`
  mutation SignUp($input: SignUpInput!) {
    signUp(input: $input) {
      token
      user {
        id
        username
      }
      userErrors {
        field
        message
        code
      }
    }
  }
`);

const LogIn = graphql(`
  mutation LogIn($input: LogInInput!) {
    logIn(input: $input) {
      token
      user {
        id
        username
      }
      userErrors {
        field
        message
        code
      }
    }
  }
`);

/** Only a path inside the app is a place to go back to (never another site). */
function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

export function SignIn({ mode, next }: { mode: "in" | "up"; next: string | null }) {
  const { ended } = useSession();
  const [notice] = useState(ended);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<UserErrors | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const title = mode === "up" ? "Create an account" : "Sign in";
  useTitle(title);
  useEffect(() => endedShown(), []);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setErrors(null);
    setFailure(null);
    try {
      const input = { username: username.trim(), password };
      const payload =
        mode === "up" ? accepted((await request(SignUp, { input })).signUp) : accepted((await request(LogIn, { input })).logIn);
      if (!payload.token || !payload.user) throw new Error("The server did not return a session.");
      signedIn(payload.token, payload.user);
      navigate(safeNext(next));
    } catch (error) {
      if (error instanceof UserErrors) setErrors(error);
      else setFailure(error instanceof Error ? error.message : String(error));
      setBusy(false);
    }
  };

  const general = errors?.errors.filter((e) => e.field !== "username" && e.field !== "password") ?? [];
  return (
    <section class="narrow">
      <h1 tabIndex={-1}>{title}</h1>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <Field
          id="username"
          label="Username"
          hint={mode === "up" ? "3 to 32 characters: letters, digits, - or _." : undefined}
          error={errors?.about("username")}
        >
          {(props) => (
            <input
              {...props}
              type="text"
              name="username"
              autoComplete="username"
              required
              value={username}
              onInput={(e) => setUsername(e.currentTarget.value)}
            />
          )}
        </Field>
        <Field
          id="password"
          label="Password"
          hint={mode === "up" ? "At least 10 characters." : undefined}
          error={errors?.about("password")}
        >
          {(props) => (
            <input
              {...props}
              type="password"
              name="password"
              autoComplete={mode === "up" ? "new-password" : "current-password"}
              required
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          )}
        </Field>
        {(general.length > 0 || failure) && (
          <div class="error-box" role="alert">
            {general.map((e) => (
              <p>{e.message}</p>
            ))}
            {failure && <p>{failure}</p>}
          </div>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "One moment…" : title}
        </button>
      </form>
      <p>
        {mode === "up" ? (
          <>
            Already have an account? <Link to={`/signin${next ? `?next=${encodeURIComponent(next)}` : ""}`}>Sign in</Link>
          </>
        ) : (
          <>
            New here? <Link to={`/signup${next ? `?next=${encodeURIComponent(next)}` : ""}`}>Create an account</Link>
          </>
        )}
      </p>
    </section>
  );
}
