// Typing indicators: the line that says who is typing in the open channel,
// and the typing frames the page sends while its user types.

/** Names shown before the rest are counted. */
const NAMED = 3;

/**
 * The indicator's text for `users` (the page's own user left out already):
 * "alice is typing…", "alice and bob are typing…", "alice, bob and carol
 * are typing…", "alice, bob and 2 others are typing…", or "".
 */
export function typingText(users: readonly string[]): string {
  const [first, second, third] = users;
  if (first === undefined) return "";
  if (second === undefined) return `${first} is typing…`;
  if (third === undefined) return `${first} and ${second} are typing…`;
  if (users.length === NAMED) return `${first}, ${second} and ${third} are typing…`;
  return `${first}, ${second} and ${users.length - 2} others are typing…`;
}

/**
 * Least time between two typing starts in one channel. The gateway refuses
 * a second start within 1 s (`rate_limited`); the SDK repeats starts only
 * every 3 s, but a stop lets the next start out at once.
 */
export const START_GAP_MS = 1_200;

interface Draft {
  /** When the last start was handed to the SDK. */
  startedAt: number;
  /** A start held back by `START_GAP_MS`. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Turns draft changes into typing frames: a start while the draft holds
 * text (the SDK repeats it while the user keeps typing), a stop when it is
 * cleared or sent. Starts that would come too soon after the previous one
 * wait for the gap.
 */
export class TypingSender {
  private readonly drafts = new Map<string, Draft>();

  constructor(
    private readonly send: (channel: string, stop: boolean) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** The draft in `channel` changed; `text` says whether it holds any. */
  draft(channel: string, text: boolean): void {
    if (!text) {
      this.stop(channel);
      return;
    }
    let d = this.drafts.get(channel);
    if (!d) {
      d = { startedAt: Number.NEGATIVE_INFINITY, timer: undefined };
      this.drafts.set(channel, d);
    }
    if (d.timer !== undefined) return;
    const wait = d.startedAt + START_GAP_MS - this.now();
    if (wait <= 0) {
      this.start(channel, d);
      return;
    }
    const draft = d;
    d.timer = setTimeout(() => {
      draft.timer = undefined;
      this.start(channel, draft);
    }, wait);
  }

  /** The user sent the draft, cleared it or left the channel. */
  stop(channel: string): void {
    const d = this.drafts.get(channel);
    if (d?.timer !== undefined) {
      clearTimeout(d.timer);
      d.timer = undefined;
    }
    this.send(channel, true);
  }

  /** Drops every held start (signing out). */
  clear(): void {
    for (const d of this.drafts.values()) clearTimeout(d.timer);
    this.drafts.clear();
  }

  private start(channel: string, d: Draft): void {
    d.startedAt = this.now();
    this.send(channel, false);
  }
}
