export { ChatClient } from "./client.js";
export type {
  ChangeOptions,
  ClientEvents,
  ClientOptions,
  ConnectionState,
  ReconnectingInfo,
  SendAck,
  SendOptions,
  SubscribeOptions,
} from "./client.js";
export { isChange, MessageState } from "./changes.js";
export type { Change, ChangeKind, MessageStateOptions } from "./changes.js";
export { Subscription } from "./subscription.js";
export type { PresenceEvent, ReadEvent, ReloadRequiredEvent, SubscriptionEvents, SubscriptionState, TypingEvent } from "./subscription.js";
export { ChatError, isRetryableCode } from "./errors.js";
export type { LocalErrorCode } from "./errors.js";
export { HttpApi, fetchDevToken, httpBase, wsBase } from "./http.js";
export type {
  ChangeReceipt,
  Channel,
  ChannelMember,
  ChannelRole,
  ChannelVisibility,
  CreateChannelOptions,
  DownloadUrl,
  HistoryPage,
  HistoryQuery,
  HttpChangeOptions,
  Media,
  MentionsQuery,
  ReadPosition,
  UnreadCounts,
  Message,
  OpenApiDocument,
  PublicChannelsPage,
  PublicChannelsQuery,
  RouteInfo,
  UploadBody,
  UploadTarget,
  UserPresence,
} from "./http.js";
export { decodeToken } from "./token.js";
export type { GetToken, TokenClaims, TokenReason } from "./token.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export type { LinkInfo, TransportHooks, WebSocketConstructor, WebSocketLike } from "./link.js";
export { JSON_SUBPROTOCOL } from "./link.js";
export * from "./generated/protocol.js";

/** Which epoch a sequence number belongs to: `seq` divided by 2^32. */
export function epochOf(seq: number): number {
  return Math.floor(seq / 2 ** 32);
}
