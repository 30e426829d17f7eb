// Type declarations for gateway-client.js (served at /client.d.ts). See docs/protocol.md.

/** Opaque position "<epoch>-<seq>", ordered within an epoch. */
export type Position = string;

export interface MessageProps {
  content_type?: string;
  response_topic?: string;
  /** base64 */
  correlation_data?: string;
  payload_format_indicator?: 0 | 1;
  message_expiry_interval?: number;
  user_properties?: [string, string][];
}

export interface Message {
  op: "msg";
  channel: string;
  pos: Position;
  /** Accepted at, ms since the Unix epoch. */
  ts: number;
  qos: 0 | 1 | 2;
  /** True for a retained message sent because the subscription asked for them. */
  retain: boolean;
  encoding: "json" | "utf8" | "base64";
  data: unknown;
  props?: MessageProps;
}

export interface Reset {
  op: "reset";
  filter: string;
  /** The one channel of the filter that lost messages; absent when any may have. */
  channel?: string;
  reason: "retention" | "epoch";
  from: Position;
  to: Position | null;
}

export interface Dropped {
  op: "dropped";
  count: number;
  total: number;
}

export interface Member {
  id: string;
  kind: "mqtt" | "browser";
  since: number;
}

export interface ClientOptions {
  /** "auto" (default): WebSocket, falling back to SSE + REST when WebSocket fails. */
  transport?: "auto" | "ws" | "sse";
  /** Declares this connection's client id (presence). */
  clientId?: string;
  token?: string;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  publishTimeoutMs?: number;
  publishAttempts?: number;
  pingIntervalMs?: number;
  wsFailuresBeforeFallback?: number;
}

export interface SubscribeOptions {
  /** Start with the last n messages matching the filter. */
  rewind?: number;
  /** Start with the messages of the last n seconds. */
  rewindSeconds?: number;
  /** Start right after this position. */
  since?: Position;
  /** Receive the retained messages first. */
  retained?: boolean;
  /** 1 (default): catch up after falling behind; 0: live only, drop oldest when slow. */
  qos?: 0 | 1;
}

export interface PublishOptions {
  qos?: 0 | 1 | 2;
  retain?: boolean;
  encoding?: "json" | "utf8" | "base64";
  props?: MessageProps;
  /** Idempotency key; generated when absent. */
  msgId?: string;
}

export interface Ack {
  pos: Position;
  duplicate: boolean;
}

export interface Subscription {
  readonly filter: string;
  /** Last position delivered to this subscription. */
  readonly position: Position | null;
  unsubscribe(): Promise<void>;
}

export interface PresenceHandlers {
  onEnter?(member: Member): void;
  onLeave?(member: Member, reason: "disconnect" | "will"): void;
  onSync?(members: Member[]): void;
}

export interface PresenceWatch {
  readonly members: Map<string, Member>;
  stop(): void;
}

export declare class GatewayError extends Error {
  readonly code: string;
  constructor(code: string, message?: string);
}

export declare function topicMatches(filter: string, topic: string): boolean;

export declare class GatewayClient {
  constructor(baseUrl?: string, options?: ClientOptions);
  readonly transport: "ws" | "sse" | null;
  readonly state: "idle" | "connecting" | "open" | "closed";
  readonly epoch: string | null;
  connect(): Promise<void>;
  close(): void;
  subscribe(filter: string, callback: (msg: Message) => void): Promise<Subscription>;
  subscribe(filter: string, opts: SubscribeOptions, callback: (msg: Message) => void): Promise<Subscription>;
  unsubscribe(filter: string): Promise<void>;
  publish(channel: string, data: unknown, opts?: PublishOptions): Promise<Ack>;
  presence(filter: string, handlers?: PresenceHandlers): PresenceWatch;
  on(event: "message", fn: (msg: Message) => void): () => void;
  on(event: "reset", fn: (reset: Reset) => void): () => void;
  on(event: "dropped", fn: (d: Dropped) => void): () => void;
  on(event: "state", fn: (state: string) => void): () => void;
  on(event: "open", fn: (transport: "ws" | "sse") => void): () => void;
  on(event: "close" | "error" | "epoch", fn: (...args: unknown[]) => void): () => void;
}
