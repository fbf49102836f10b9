// Who is around in the open channel: who is online (`online()`, then the
// presence events), the latest comings and goings, and who is typing.

import type { PresenceEvent, TypingEvent } from "../../js/src/index.js";
import { byId, h, hueOf, timeOf } from "./dom.js";
import { typingText } from "./typing.js";
import type { ChannelView } from "./view.js";

/** Presence events kept per channel. */
const ACTIVITY_KEPT = 30;

export interface PresenceHost {
  user(): string;
  active(): ChannelView | undefined;
  /** Someone new came online in the open channel: the members list may not have them yet. */
  arrived(user: string): void;
}

export class PresencePanel {
  private readonly el = {
    online: byId<HTMLUListElement>("online"),
    count: byId<HTMLElement>("online-count"),
    activity: byId<HTMLOListElement>("activity"),
    typing: byId<HTMLElement>("typing"),
  };

  constructor(private readonly host: PresenceHost) {}

  clear(): void {
    this.el.online.replaceChildren();
    this.el.activity.replaceChildren();
    this.showTyping(undefined);
  }

  /** Asks who is online in `view`'s channel; events that came meanwhile are newer than the answer. */
  async refresh(view: ChannelView): Promise<void> {
    if (!view.sub) return;
    const asked = performance.now();
    try {
      const users = await view.sub.online();
      view.online.clear();
      for (const u of users) view.online.add(u);
      for (const [user, e] of view.lastEvent) {
        if (e.receivedAt < asked) continue;
        if (e.event === "join") view.online.add(user);
        else view.online.delete(user);
      }
      // This page's own session is subscribed, so its user is online.
      if (view.sub.state === "subscribed") view.online.add(this.host.user());
      if (view === this.host.active()) this.render(view);
    } catch {
      // Presence is advisory; the events keep the list going.
    }
  }

  event(view: ChannelView, p: PresenceEvent): void {
    if (p.event === "join") view.online.add(p.user_id);
    else view.online.delete(p.user_id);
    view.lastEvent.set(p.user_id, { event: p.event, receivedAt: performance.now() });
    view.activity.unshift({ at: p.at_ms, user: p.user_id, event: p.event });
    view.activity.splice(ACTIVITY_KEPT);
    if (view !== this.host.active()) return;
    this.render(view);
    if (p.event === "join") this.host.arrived(p.user_id);
  }

  /** Who is typing in `view`'s channel now (the set includes the user while they type). */
  typing(view: ChannelView, e: TypingEvent | undefined): void {
    const me = this.host.user();
    view.typing = (e?.user_ids ?? []).filter((u) => u !== me);
    if (view === this.host.active()) this.showTyping(view);
  }

  render(view: ChannelView | undefined): void {
    const me = this.host.user();
    const users = view ? [...view.online].sort() : [];
    this.el.count.textContent = view ? String(users.length) : "";
    this.el.online.replaceChildren(
      ...users.map((u) => {
        const li = h("li", { data: { user: u } }, h("span", { class: "dot" }), h("span", { text: u === me ? `${u} (you)` : u }));
        li.style.setProperty("--hue", String(hueOf(u)));
        return li;
      }),
    );
    this.el.activity.replaceChildren(
      ...(view?.activity ?? []).map((a) =>
        h(
          "li",
          { data: { event: a.event, user: a.user } },
          h("time", { text: timeOf(a.at) }),
          " ",
          h("span", { text: `${a.user} ${a.event === "join" ? "came online" : "went offline"}` }),
        ),
      ),
    );
    this.showTyping(view);
  }

  private showTyping(view: ChannelView | undefined): void {
    const users = view?.typing ?? [];
    this.el.typing.textContent = typingText(users);
    this.el.typing.dataset["users"] = users.join(",");
  }
}
