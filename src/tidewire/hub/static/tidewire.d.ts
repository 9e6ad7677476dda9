/**
 * Types of tidewire.js, the browser client of the tidewire hub.
 * The JSDoc in tidewire.js tells the behaviour; this file only the shapes.
 */

export declare const VERSION: string;

/** Codes of the errors made by the client itself; the hub's errors carry the protocol's codes (400...503). */
export declare const ErrorCode: Readonly<{
  /** No reply within the request's timeout. */
  TIMEOUT: 1;
  /** The connection closed before the reply; the request may or may not have been done. */
  CONNECTION_LOST: 2;
  /** The client is disconnected; the request was not sent. */
  NOT_CONNECTED: 3;
  /** The hub sent something that isn't the protocol. */
  PROTOCOL: 4;
  /** getToken() failed; see the error's cause. */
  TOKEN: 5;
}>;

export declare class TidewireError extends Error {
  constructor(code: number, message: string, options?: { cause?: unknown });
  readonly name: "TidewireError";
  /** A protocol code (400, 401, 403, 404, 409, 429, 500, 503) or one of {@link ErrorCode}. */
  code: number;
}

/** The delay in milliseconds before reconnection attempt `attempt` (0 first): within [minDelay, maxDelay]. */
export declare function backoff(
  attempt: number,
  minDelay: number,
  maxDelay: number,
  random?: () => number,
): number;

export type State = "disconnected" | "connecting" | "connected";
export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed";

export interface ClientInfo {
  /** The connection's id. */
  client: string;
  /** The user id from the token; "" for anonymous clients. */
  user: string;
  info?: Record<string, unknown>;
}

export interface Position {
  epoch: string;
  offset: number;
}

export interface Publication<T = any> {
  channel: string;
  epoch: string;
  offset: number;
  data: T;
  /** Absent when a backend published. */
  from?: ClientInfo;
}

export interface SubscribedContext {
  channel: string;
  epoch: string;
  offset: number;
  /** False the first time, true after a reconnection. */
  resubscribed: boolean;
  /** True when the hub proved that nothing was missed since the last position. */
  recovered: boolean;
  /** With the `presence` option. */
  presence?: ClientInfo[];
}

export interface Session {
  client: string;
  user: string;
  version: string;
  /** Seconds between pings. */
  heartbeat: number;
  /** The connection's expiry, Unix seconds; a refresh moves it. */
  expires?: number;
  /** What the backend's connect proxy returned for the client. */
  data?: unknown;
}

export interface UnsubscribedContext {
  channel: string;
}

export interface PresenceEvent {
  channel: string;
  client: ClientInfo;
}

export interface PresenceStats {
  numClients: number;
  /** Distinct users; anonymous clients count as clients only. */
  numUsers: number;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  /** Whether the client will reconnect by itself. */
  reconnect: boolean;
  /** Milliseconds before it tries, when it will. */
  delay: number | null;
}

export interface HistoryResult<T = any> {
  epoch: string;
  offset: number;
  publications: Publication<T>[];
  /** With `since`. */
  recovered?: boolean;
}

export interface HistoryOptions {
  limit?: number;
  since?: Position;
}

/**
 * What the client needs of a WebSocket; the browser's WebSocket has it. The
 * client sets the four handlers, and reads `data` of the message events and
 * `code` and `reason` of the close event.
 */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

export interface ClientOptions {
  /** A JWT made by your backend. */
  token?: string;
  /** Called for a (new) token when one is needed; a falsy result connects anonymously. */
  getToken?: () => Promise<string | null | undefined>;
  /** Shown in presence and in the `from` of this client's publications; at most 1 KiB as JSON. */
  info?: Record<string, unknown> | null;
  /** Sent with each connect, for the backend's connect proxy. */
  data?: unknown;
  /** Milliseconds; default 500. */
  minDelay?: number;
  /** Milliseconds; default 20000. */
  maxDelay?: number;
  /** Milliseconds a request waits for its reply; default 10000. */
  timeout?: number;
  /** Milliseconds a ping waits for its reply; default 5000. */
  heartbeatTimeout?: number;
  /** The WebSocket class; defaults to the global one. */
  WebSocket?: new (url: string) => WebSocketLike;
}

export interface SubscribeOptions<T = any> {
  onPublication?(this: Subscription<T>, pub: Publication<T>): void;
  onJoin?(this: Subscription<T>, client: ClientInfo): void;
  onLeave?(this: Subscription<T>, client: ClientInfo): void;
  onSubscribed?(this: Subscription<T>, ctx: SubscribedContext): void;
  onError?(this: Subscription<T>, err: TidewireError): void;
  /** Ask for the presence list with each subscribe. */
  presence?: boolean;
  /** Recover from this position on the first subscription. */
  since?: Position;
  /** A subscription token (a JWT with a `channel` claim); needed in a private namespace. */
  token?: string;
  /** Called for a subscription token when `token` is not given, and once after a refusal (401). */
  getToken?: (channel: string) => Promise<string | null | undefined>;
  /** The hub ended the subscription. */
  onUnsubscribed?(this: Subscription<T>, ctx: UnsubscribedContext): void;
}

export interface ClientEvents {
  state: (state: State, previous: State) => void;
  connect: (session: Session) => void;
  disconnect: (event: DisconnectEvent) => void;
  error: (err: TidewireError) => void;
  /** A server-side subscription began or was re-established. */
  subscribed: (ctx: SubscribedContext) => void;
  /** A publication of a server-side subscription. */
  publication: (pub: Publication) => void;
  join: (event: PresenceEvent) => void;
  leave: (event: PresenceEvent) => void;
  /** The hub ended a server-side subscription. */
  unsubscribed: (ctx: UnsubscribedContext) => void;
}

export declare class Client {
  constructor(url: string | URL, options?: ClientOptions);
  /** The hub's WebSocket URL, resolved. */
  readonly url: string;
  /** Sent with the next connect. */
  info: Record<string, unknown> | null;
  readonly state: State;
  /** The hub's answer to connect while connected, else null. */
  readonly session: Session | null;

  on<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, fn: ClientEvents[E]): void;

  connect(): void;
  disconnect(): void;

  /** @throws Error when this client already has a subscription to `channel`. */
  subscribe<T = any>(channel: string, options?: SubscribeOptions<T>): Subscription<T>;
  subscription<T = any>(channel: string): Subscription<T> | null;

  publish(channel: string, data: unknown): Promise<Position>;
  presence(channel: string): Promise<ClientInfo[]>;
  presenceStats(channel: string): Promise<PresenceStats>;
  history<T = any>(channel: string, options?: HistoryOptions): Promise<HistoryResult<T>>;
  /** Call `method` on the backend (the hub's rpc proxy); resolves with its `data`. */
  rpc<T = any>(method: string, data?: unknown): Promise<T>;
  /** The server-side subscriptions, with the last position seen in each. */
  serverSubscriptions(): Map<string, Position>;
}

export declare class Subscription<T = any> {
  private constructor();
  readonly client: Client;
  readonly channel: string;
  readonly state: SubscriptionState;
  /** The last position seen, or null before the first subscribe reply. */
  readonly position: Position | null;
  /** Resolves when the hub confirms, or at once when not connected; never rejects. */
  unsubscribe(): Promise<void>;
  presence(): Promise<ClientInfo[]>;
  history(options?: HistoryOptions): Promise<HistoryResult<T>>;
}
