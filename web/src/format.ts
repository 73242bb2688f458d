// Dates, durations and sizes in the viewer's own locale and time zone (the browser's),
// with the exact instant available for a tooltip.

export class Formats {
  private readonly short: Intl.DateTimeFormat;
  private readonly full: Intl.DateTimeFormat;
  private readonly rtf: Intl.RelativeTimeFormat;
  private readonly locale: string | undefined;

  constructor(locale?: string, timeZone?: string) {
    this.locale = locale;
    this.short = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short", timeZone });
    this.full = new Intl.DateTimeFormat(locale, { dateStyle: "full", timeStyle: "long", timeZone });
    this.rtf = new Intl.RelativeTimeFormat(locale, { numeric: "always" });
  }

  /** e.g. "12 Jan 2027, 14:03" (en-GB): date and minute, local time. */
  dateTime(iso: string): string {
    return this.short.format(new Date(iso));
  }

  /** The exact instant: local, to the second, with the zone; then as the API gave it (UTC). */
  exact(iso: string): string {
    return `${this.full.format(new Date(iso))} (${iso})`;
  }

  /** e.g. "in 9 days", "in 45 seconds", "3 hours ago". */
  relative(iso: string, now: number): string {
    const seconds = (new Date(iso).getTime() - now) / 1000;
    const size = Math.abs(seconds);
    if (size < 60) return this.rtf.format(Math.round(seconds), "second");
    if (size < 3600) return this.rtf.format(Math.round(seconds / 60), "minute");
    if (size < 86400) return this.rtf.format(Math.round(seconds / 3600), "hour");
    return this.rtf.format(Math.round(seconds / 86400), "day");
  }

  /** e.g. "1.5 MB" (decimal units, as file managers show them). */
  bytes(count: number): string {
    const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"] as const;
    let value = count;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return new Intl.NumberFormat(this.locale, {
      style: "unit",
      unit: units[unit],
      unitDisplay: unit === 0 ? "long" : "short",
      maximumFractionDigits: unit === 0 ? 0 : 1,
    }).format(value);
  }

  number(count: number): string {
    return new Intl.NumberFormat(this.locale).format(count);
  }
}

/** The viewer's: the browser's locale and time zone. */
export const formats = new Formats();
