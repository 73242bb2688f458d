import { render } from "preact";
import { startLive } from "./api/live";
import { App } from "./app";
import "./styles.css";

startLive();
render(<App />, document.getElementById("app")!);
