import { useTitle } from "../hooks";
import { Link } from "../router";

export function NotFound() {
  useTitle("Not found");
  return (
    <>
      <h1 tabIndex={-1}>Nothing here</h1>
      <p>
        This page does not exist (or is not yours to see). <Link to="/">Browse the models</Link>.
      </p>
    </>
  );
}
