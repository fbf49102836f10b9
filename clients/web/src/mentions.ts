// `@user` mentions in a message's text, found by the rule every service
// uses (docs/protocol.md, "message"): `@` at the start of the text or after
// a character that is neither a letter, a digit nor `@`, then a user ID up
// to the next space, with closing punctuation trimmed. So "thanks @ana."
// mentions ana, and ana@example.com mentions nobody.

/** Characters trimmed from the end of a mention. */
const TRAILING = new Set([".", ",", ";", ":", "!", "?", ")", "]", "}", '"', "'", ">"]);
/** The longest user ID, in UTF-8 bytes. */
const MAX_USER_BYTES = 128;
/** Most distinct users one message mentions. */
const MAX_MENTIONS = 32;

const WORDLIKE = /[\p{L}\p{N}@]/u;
const ENDS = /[\s\p{Cc}@]/u;

/** A piece of a message's text: plain, or a mention of `user`. */
export interface TextPart {
  text: string;
  user?: string;
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** `body` cut into plain text and mentions, in order; joined, the parts give `body` back. */
export function mentionParts(body: string): TextPart[] {
  const parts: TextPart[] = [];
  const chars = Array.from(body);
  let plain = "";
  let i = 0;
  while (i < chars.length) {
    const c = chars[i] ?? "";
    const previous = i > 0 ? chars[i - 1] : undefined;
    if (c !== "@" || (previous !== undefined && WORDLIKE.test(previous))) {
      plain += c;
      i += 1;
      continue;
    }
    let end = i + 1;
    while (end < chars.length && !ENDS.test(chars[end] ?? "")) end += 1;
    let nameEnd = end;
    while (nameEnd > i + 1 && TRAILING.has(chars[nameEnd - 1] ?? "")) nameEnd -= 1;
    const name = chars.slice(i + 1, nameEnd).join("");
    if (name === "" || utf8Length(name) > MAX_USER_BYTES) {
      plain += c;
      i += 1;
      continue;
    }
    if (plain !== "") parts.push({ text: plain });
    plain = "";
    parts.push({ text: `@${name}`, user: name });
    i = nameEnd;
  }
  if (plain !== "") parts.push({ text: plain });
  return parts;
}

/** The users `body` mentions, in order of first mention, each once, `author` left out. */
export function mentionsIn(body: string, author?: string): string[] {
  const found: string[] = [];
  for (const part of mentionParts(body)) {
    if (part.user === undefined || part.user === author || found.includes(part.user)) continue;
    found.push(part.user);
    if (found.length === MAX_MENTIONS) break;
  }
  return found;
}

/** What the page needs of a message to tell whom it mentions. */
export interface Mentioning {
  sender_id: string;
  body: string;
  mentions?: string[];
  edit_count?: number;
  deleted?: boolean;
}

/**
 * The users a post mentions now: the list it came with, or, once edited
 * (an edit replaces the mentions, and a live edit carries only new text),
 * the ones its current text names.
 */
export function mentionsOf(post: Mentioning): string[] {
  if (post.deleted === true) return [];
  if ((post.edit_count ?? 0) > 0 || post.mentions === undefined) return mentionsIn(post.body, post.sender_id);
  return post.mentions;
}
