// Attachments: an image shown inline from its signed download URL (asked
// for again once when it has expired), any other file as a download link.

import type { ChatClient, Media } from "../../js/src/index.js";
import { describe, h } from "./dom.js";

/** Types the media service accepts that the page shows inline. */
const INLINE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

export interface AttachmentsHost {
  client(): ChatClient | undefined;
  /** Whether the list follows the conversation (scrolled to its bottom). */
  isPinned(): boolean;
  scrollToBottom(): void;
  setStatus(text: string): void;
}

interface Found {
  media: Media;
  url: string | undefined;
}

export class Attachments {
  private readonly media = new Map<string, Promise<Found>>();

  constructor(private readonly host: AttachmentsHost) {}

  clear(): void {
    this.media.clear();
  }

  /** A figure for media `id` that fills in once its details and URL are known. */
  render(id: string): HTMLElement {
    const figure = h("figure", { class: "attachment", data: { mediaId: id, state: "loading" } }, h("span", { class: "placeholder", text: "Loading attachment…" }));
    let retried = false;
    const show = (fresh: boolean) => {
      this.find(id, fresh).then(
        ({ media, url }) => {
          if (url === undefined) {
            figure.replaceChildren(this.fileLink(id, media));
            figure.dataset["state"] = "file";
            return;
          }
          const pinned = this.host.isPinned();
          const img = h("img", { class: "attachment-image", attrs: { alt: media.filename, src: url, decoding: "async" } });
          img.addEventListener("load", () => {
            figure.dataset["state"] = "loaded";
            if (pinned && figure.isConnected) this.host.scrollToBottom();
          });
          img.addEventListener("error", () => {
            // Download URLs expire: ask for a new one, once.
            if (!retried) {
              retried = true;
              show(true);
            } else {
              figure.dataset["state"] = "error";
              figure.replaceChildren(h("span", { class: "placeholder", text: `${media.filename} could not be loaded` }));
            }
          });
          figure.replaceChildren(img, h("figcaption", { text: media.filename }));
        },
        (err: unknown) => {
          figure.dataset["state"] = "error";
          figure.replaceChildren(h("span", { class: "placeholder", text: `Attachment unavailable: ${describe(err)}` }));
        },
      );
    };
    show(false);
    return figure;
  }

  private fileLink(id: string, media: Media): HTMLElement {
    const link = h("a", { class: "file", text: `${media.filename} (${Math.ceil(media.size / 1024)} KiB)`, attrs: { href: "#" } });
    link.addEventListener("click", (e) => {
      e.preventDefault();
      this.host
        .client()
        ?.mediaDownloadUrl(id)
        .then(
          (d) => window.open(d.download_url, "_blank", "noopener"),
          (err: unknown) => this.host.setStatus(`Download failed: ${describe(err)}`),
        );
    });
    return link;
  }

  private find(id: string, fresh: boolean): Promise<Found> {
    const client = this.host.client();
    if (!client) return Promise.reject(new Error("signed out"));
    let found = fresh ? undefined : this.media.get(id);
    if (!found) {
      found = (async () => {
        const media = await client.getMedia(id);
        const url = INLINE_TYPES.has(media.content_type) ? (await client.mediaDownloadUrl(id)).download_url : undefined;
        return { media, url };
      })();
      found.catch(() => this.media.delete(id));
      this.media.set(id, found);
    }
    return found;
  }
}
