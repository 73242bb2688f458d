import { formats } from "../format";

/** An instant in the viewer's locale and zone; the exact instant on hover (title). */
export function Time({ at, as = "date", now }: { at: string; as?: "date" | "relative"; now?: number }) {
  const text = as === "date" ? formats.dateTime(at) : formats.relative(at, now ?? Date.now());
  return (
    <time dateTime={at} title={formats.exact(at)}>
      {text}
    </time>
  );
}
