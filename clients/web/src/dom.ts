// The page's small DOM helpers, shared by its parts.

import { ChatError } from "../../js/src/index.js";

/** The element with `id`; the page is broken without it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  data?: Record<string, string>;
  attrs?: Record<string, string>;
}

/** A `tag` element with `props` and `children`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class !== undefined) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title !== undefined) node.title = props.title;
  for (const [k, v] of Object.entries(props.data ?? {})) node.dataset[k] = v;
  for (const [k, v] of Object.entries(props.attrs ?? {})) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** A time of day, to the second. */
export function timeOf(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A stable colour per user. */
export function hueOf(user: string): number {
  let hash = 0;
  for (let i = 0; i < user.length; i++) hash = (hash * 31 + user.charCodeAt(i)) >>> 0;
  return hash % 360;
}

/** An error as one line for the page: its message and code. */
export function describe(err: unknown): string {
  if (err instanceof ChatError) return `${err.message} (${err.code})`;
  if (err instanceof Error) return err.message;
  return String(err);
}
