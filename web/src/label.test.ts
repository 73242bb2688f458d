import { describe, expect, it } from "vitest";
import { Formats } from "./format";
import { bannerDue, datasetLabel, labelText, nextChange } from "./label";

const format = new Formats("en-GB", "Asia/Kathmandu");
const NOW = Date.parse("2027-01-03T10:00:00Z");
const private_ = {
  visibility: "PRIVATE" as const,
  status: "AVAILABLE" as const,
  expiresAt: "2027-01-12T13:03:07.123456+00:00",
  deletedAt: null,
  deletionReason: null,
};

describe("datasetLabel", () => {
  it("says who can see a private dataset and when it goes, in the viewer's zone", () => {
    const text = labelText(datasetLabel(private_, NOW), format, NOW);
    expect(text).toBe("Private: only you can see this. Deleted automatically on 12 Jan 2027, 18:48, in 9 days.");
  });

  it("says a public one is public", () => {
    const label = datasetLabel({ ...private_, visibility: "PUBLIC", expiresAt: null }, NOW);
    expect(label.tone).toBe("public");
    expect(labelText(label, format, NOW)).toBe("Public: anyone can see and download it.");
  });

  it("shows a tombstone with the date and the reason", () => {
    const gone = { ...private_, status: "DELETED" as const, deletedAt: "2027-01-12T13:03:08+00:00", deletionReason: "EXPIRED" as const };
    expect(labelText(datasetLabel(gone, NOW), format, NOW)).toBe("Deleted on 12 Jan 2027, 18:48 (expired).");
    const mine = { ...gone, deletionReason: "OWNER_REQUEST" as const };
    expect(labelText(datasetLabel(mine, NOW), format, NOW)).toBe("Deleted on 12 Jan 2027, 18:48 (deleted by its owner).");
  });

  it("never calls a dataset past its expiry downloadable, even before the tombstone", () => {
    const late = Date.parse(private_.expiresAt) + 1000;
    const label = datasetLabel(private_, late);
    expect(label.tone).toBe("deleted");
    expect(labelText(label, format, late)).toBe("Private: its window ended on 12 Jan 2027, 18:48; it is being deleted.");
  });

  it("tells a private upload that has not finished", () => {
    const pending = { ...private_, status: "PENDING_UPLOAD" as const, expiresAt: null };
    expect(labelText(datasetLabel(pending, NOW), format, NOW)).toContain("Its upload has not finished.");
  });
});

describe("bannerDue", () => {
  const expires = Date.parse(private_.expiresAt);
  const day = 86_400;

  it("shows within the last reminder window only", () => {
    const offsets = [7 * day, day];
    expect(bannerDue(private_, expires - 2 * day * 1000, offsets)).toBe(false);
    expect(bannerDue(private_, expires - day * 1000, offsets)).toBe(true);
    expect(bannerDue(private_, expires - 1000, offsets)).toBe(true);
    expect(bannerDue(private_, expires, offsets)).toBe(false);
  });

  it("shows when the server sent the reminder, whatever this clock says", () => {
    expect(bannerDue(private_, expires - 3 * day * 1000, [day], true)).toBe(true);
  });

  it("never shows for public, deleted or reminder-less datasets", () => {
    expect(bannerDue({ ...private_, visibility: "PUBLIC" }, expires - 1000, [day])).toBe(false);
    expect(bannerDue({ ...private_, status: "DELETED" }, expires - 1000, [day])).toBe(false);
    expect(bannerDue(private_, expires - 1000, [])).toBe(false);
  });
});

describe("nextChange", () => {
  it("is the next reminder start or the expiry", () => {
    const expires = Date.parse(private_.expiresAt);
    expect(nextChange(private_, expires - 10_000, [5])).toBe(expires - 5_000);
    expect(nextChange(private_, expires - 1_000, [5])).toBe(expires);
    expect(nextChange(private_, expires + 1, [5])).toBe(null);
  });
});

describe("Formats", () => {
  it("gives the exact instant, local and as the API sent it", () => {
    expect(format.exact(private_.expiresAt)).toMatch(/^Tuesday(,)? 12 January 2027 at 18:48:07 .+ \(2027-01-12T13:03:07\.123456\+00:00\)$/);
  });

  it("counts relative time in the largest fitting unit", () => {
    expect(format.relative("2027-01-03T10:00:45Z", NOW)).toBe("in 45 seconds");
    expect(format.relative("2027-01-03T12:00:00Z", NOW)).toBe("in 2 hours");
    expect(format.relative("2027-01-01T10:00:00Z", NOW)).toBe("2 days ago");
  });

  it("shows sizes in decimal units", () => {
    expect(format.bytes(146)).toBe("146 bytes");
    expect(format.bytes(1_500_000)).toBe("1.5 MB");
  });
});
