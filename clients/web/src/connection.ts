// The connection indicator (connected, reconnecting and why, which
// gateways) and the banner shown while a connection that worked is lost.

import type { ChatClient, ConnectionState } from "../../js/src/index.js";
import { byId, describe } from "./dom.js";

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

export class ConnectionIndicator {
  private client: ChatClient | undefined;
  private everConnected = false;
  private reconnects = 0;

  private readonly el = {
    conn: byId<HTMLElement>("conn"),
    label: byId<HTMLElement>("conn-label"),
    detail: byId<HTMLElement>("conn-detail"),
    banner: byId<HTMLElement>("offline-banner"),
  };

  /** Follows `client` (signed in), or nothing (signed out). */
  follow(client: ChatClient | undefined): void {
    this.client = client;
    this.everConnected = false;
    this.reconnects = 0;
    this.el.conn.dataset["reconnects"] = "0";
    if (!client) return;
    client.on("reconnecting", (info) => {
      this.reconnects += 1;
      this.el.conn.dataset["reconnects"] = String(this.reconnects);
      this.el.detail.textContent = `retrying ${hostOf(info.url)} in ${(info.delayMs / 1000).toFixed(1)} s (attempt ${info.attempt}): ${info.reason}`;
    });
    client.on("open", () => this.showConnections());
    client.on("moved", (info) => {
      this.el.detail.textContent = `${info.channels.join(", ")} moved to ${hostOf(info.to)} (${info.reason})`;
    });
  }

  show(state: ConnectionState): void {
    this.el.conn.dataset["state"] = state;
    const connected = state === "connected";
    if (connected) this.everConnected = true;
    const labels: Record<ConnectionState, string> = {
      connected: "Connected",
      connecting: this.everConnected ? "Reconnecting…" : "Connecting…",
      disconnected: "Disconnected",
      closed: "Signed out",
    };
    this.el.label.textContent = labels[state];
    if (connected) this.showConnections();
    if (state === "disconnected" && this.client?.lastError) this.el.detail.textContent = describe(this.client.lastError);
    if (state === "closed" || (state === "disconnected" && !this.client)) this.el.detail.textContent = "";
    // The banner appears once a connection that worked is lost.
    const lost = this.client !== undefined && this.everConnected && !connected;
    this.el.banner.hidden = !lost;
  }

  private showConnections(): void {
    const client = this.client;
    if (!client || client.state !== "connected") return;
    const parts = client.connections.map((c) => `${hostOf(c.url)}${c.channels.length > 0 ? ` (${c.channels.join(", ")})` : ""}`);
    this.el.detail.textContent = parts.length > 0 ? `via ${parts.join(", ")}` : "";
  }
}
