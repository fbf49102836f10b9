// The channel directory as the page shows it: public channels found by ID
// prefix, and which of the user's channels the sidebar lists.

import type { Channel, PublicChannelsPage, PublicChannelsQuery } from "../../js/src/index.js";

/** The gateway's largest page of public channels. */
const SCAN_PAGE = 100;
/** Pages a search reads at most before it offers "More". */
const SCAN_PAGES = 5;

export interface PublicMatches {
  channels: Channel[];
  /** Where the next search continues (`after`), `undefined` when nothing is left. */
  cursor: string | undefined;
}

/**
 * Up to `want` public channels whose ID starts with `prefix`, from after
 * `cursor` (the last one looked at before), in ID order.
 *
 * The API lists IDs after a cursor and has no search, so the search starts
 * just before the prefix (the prefix minus its last character sorts before
 * every ID that starts with it) and stops at the first ID past the prefix.
 * IDs are ASCII, ordered bytewise, so string comparison is the server's order.
 */
export async function findPublic(
  list: (query: PublicChannelsQuery) => Promise<PublicChannelsPage>,
  prefix: string,
  want: number,
  cursor?: string,
): Promise<PublicMatches> {
  let after = cursor ?? (prefix.length > 1 ? prefix.slice(0, -1) : undefined);
  const found: Channel[] = [];
  for (let pages = 0; pages < SCAN_PAGES; pages++) {
    const page = await list(after === undefined ? { limit: SCAN_PAGE } : { after, limit: SCAN_PAGE });
    for (const channel of page.channels) {
      const id = channel.channel_id;
      if (id.startsWith(prefix)) {
        found.push(channel);
        after = id;
        if (found.length === want) return { channels: found, cursor: id };
      } else if (id > prefix) {
        return { channels: found, cursor: undefined };
      } else {
        after = id;
      }
    }
    if (page.next_after === null || page.channels.length === 0) return { channels: found, cursor: undefined };
    after = page.next_after;
  }
  return { channels: found, cursor: after };
}

/**
 * The sidebar's channels: the configured ones and those opened by ID first,
 * in that order, then the user's other channels by ID.
 */
export function sidebarChannels(configured: string[], opened: string[], member: Channel[]): string[] {
  const ids = [...configured, ...opened];
  const listed = new Set(ids);
  const rest = member.map((c) => c.channel_id).filter((id) => !listed.has(id)).sort();
  return [...new Set([...ids, ...rest])];
}

/** How the page labels a channel: its name when it has one besides its ID. */
export function channelLabel(id: string, channel: Pick<Channel, "name"> | undefined): string {
  const name = channel?.name.trim() ?? "";
  return name !== "" && name !== id ? `${name} (${id})` : id;
}
