/**
 * Why a forwarding attempt produced no response: the one vocabulary the request path reports,
 * passive health classifies and the access log and metrics name.
 *
 * @module
 */

/** Why a forward produced no response. */
export type ForwardFailureReason =
  /** No connection to the backend (refused, unreachable, DNS): the request was never sent. */
  | "connect"
  /** Connecting took longer than the connect timeout: the request was never sent either. */
  | "connect-timeout"
  /** The backend did not send response headers within the response-header timeout. */
  | "response-timeout"
  /** The client went away (or aborted its upload) before the response headers arrived. */
  | "client-abort"
  /** The client's streamed upload stalled past the body timeout. */
  | "client-timeout"
  /** The client's streamed upload grew past the body size limit (`--max-body-size`). */
  | "client-too-large"
  /** The balancer ran out of file descriptors connecting: nobody's fault but the load. */
  | "fd-exhausted"
  /**
   * The upstream client refused the request before connecting (`fetch` will not send a body
   * with `GET` or `HEAD`, nor the methods the handler refuses first): the request's fault.
   */
  | "unsendable"
  /**
   * The connection broke, the backend answered with something that is not HTTP, or with a
   * `101 Switching Protocols` nobody asked for.
   */
  | "protocol";
