/**
 * Static files for the demo backends: a request path maps to a file under one root directory and
 * never to anything outside it, files stream from disk, and a directory serves its `index.html`.
 *
 * Traversal is stopped twice: {@linkcode pathSegments} rejects every decoded segment that could
 * climb (`..`, `%2e%2e`, an encoded separator), and the resolved real path (symlinks followed)
 * must still lie under the root's real path.
 *
 * @module
 */
import { contentType } from "../lib/shared/std.ts";
import { errorText } from "../lib/shared/error_text.ts";

const SEPARATOR = Deno.build.os === "windows" ? "\\" : "/";
const PLAIN_TEXT = "text/plain; charset=UTF-8";

/** Where a request path leads under the root. */
export type StaticLookup =
  | { readonly kind: "file"; readonly path: string; readonly contentType: string }
  | { readonly kind: "redirect"; readonly location: string }
  | { readonly kind: "not-found" }
  | { readonly kind: "bad-path" }
  | { readonly kind: "forbidden" };

/**
 * Splits a URL path into decoded segments, or `undefined` when a segment could escape the root:
 * `.` or `..` (also percent-encoded), an encoded `/` or `\`, a `:` (Windows drive or stream), a
 * NUL, or a name made only of dots and spaces (Windows trims those to `..`). Empty segments are
 * dropped.
 *
 * @param pathname The URL's raw (percent-encoded) path.
 * @returns The decoded segments, or `undefined` for an unsafe or undecodable path.
 *
 * @example
 * ```ts
 * import { pathSegments } from "./static_files.ts";
 * if (pathSegments("/a/b%20c.html")?.join("|") !== "a|b c.html") throw new Error("bad");
 * if (pathSegments("/..%2fdeno.json") !== undefined) throw new Error("bad");
 * ```
 */
export function pathSegments(pathname: string): string[] | undefined {
  const segments: string[] = [];
  for (const raw of pathname.split("/")) {
    if (raw === "") continue;
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (/^[. ]+$/.test(segment) || /[\\/:\0]/.test(segment)) return undefined;
    segments.push(segment);
  }
  return segments;
}

/**
 * The `Content-Type` of a file from its name. Files without an extension (such as `health`) are
 * plain text; unknown extensions are `application/octet-stream`.
 *
 * @param fileName The file's name or path.
 * @returns The header value.
 *
 * @example
 * ```ts
 * import { fileContentType } from "./static_files.ts";
 * if (fileContentType("health") !== "text/plain; charset=UTF-8") throw new Error("bad");
 * if (fileContentType("index.html") !== "text/html; charset=UTF-8") throw new Error("bad");
 * ```
 */
export function fileContentType(fileName: string): string {
  const base = fileName.slice(fileName.lastIndexOf(SEPARATOR) + 1);
  const dot = base.lastIndexOf(".");
  if (dot <= 0) return PLAIN_TEXT;
  return contentType(base.slice(dot)) ?? "application/octet-stream";
}

/** The files under one root directory. */
export class StaticFiles {
  /** The root's real (absolute, symlink-free) path. */
  readonly root: string;
  readonly #prefix: string;

  private constructor(root: string) {
    this.root = root;
    this.#prefix = root.endsWith(SEPARATOR) ? root : root + SEPARATOR;
  }

  /**
   * Opens a root directory.
   *
   * @param root A path (relative to the working directory) or a `file:` URL.
   * @returns The static files under it.
   * @throws {Error} When the root does not exist or cannot be read, with the cause attached.
   * @throws {TypeError} When the root is not a directory.
   */
  static async open(root: string | URL): Promise<StaticFiles> {
    const shown = root instanceof URL ? root.href : root;
    let real: string;
    try {
      real = await Deno.realPath(root);
    } catch (error) {
      const reason = errorText(error);
      throw new Error(`Cannot serve files from "${shown}": ${reason}`, { cause: error });
    }
    const info = await Deno.stat(real);
    if (!info.isDirectory) {
      throw new TypeError(`Cannot serve files from "${shown}": it is not a directory`);
    }
    return new StaticFiles(real);
  }

  /**
   * Finds what a request path leads to. A directory without a trailing slash redirects to the
   * slashed path (so relative links in its `index.html` work); a directory without `index.html`
   * is not found (no listings).
   *
   * @param pathname The URL's raw path.
   * @returns The file, a redirect, or why there is none.
   */
  async lookup(pathname: string): Promise<StaticLookup> {
    const segments = pathSegments(pathname);
    if (segments === undefined) return { kind: "bad-path" };
    const wantsDirectory = pathname.endsWith("/");
    try {
      const real = await this.#inside([this.root, ...segments].join(SEPARATOR));
      if (real === undefined) return { kind: "not-found" };
      const info = await Deno.stat(real);
      if (info.isFile) {
        return wantsDirectory
          ? { kind: "not-found" }
          : { kind: "file", path: real, contentType: fileContentType(real) };
      }
      if (!info.isDirectory) return { kind: "not-found" };
      if (!wantsDirectory) {
        const location = `/${segments.map(encodeURIComponent).join("/")}/`;
        return { kind: "redirect", location: location === "//" ? "/" : location };
      }
      const index = await this.#inside(real + SEPARATOR + "index.html");
      if (index === undefined || !(await Deno.stat(index)).isFile) return { kind: "not-found" };
      return { kind: "file", path: index, contentType: fileContentType(index) };
    } catch (error) {
      if (error instanceof Deno.errors.PermissionDenied) return { kind: "forbidden" };
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        return { kind: "not-found" };
      }
      throw error;
    }
  }

  /**
   * Answers a GET or HEAD for a file found by {@linkcode lookup}: GET streams the file from
   * disk, HEAD sends the same headers without opening it.
   *
   * @param method `GET` or `HEAD`.
   * @param file The file to send.
   * @param headers Extra response headers.
   * @returns A 200 response.
   */
  async respond(
    method: "GET" | "HEAD",
    file: { readonly path: string; readonly contentType: string },
    headers: Headers,
  ): Promise<Response> {
    headers.set("content-type", file.contentType);
    // Demo pages must never come from a browser cache: a reload has to reach the balancer
    // again so the next backend can answer.
    headers.set("cache-control", "no-store");
    if (method === "HEAD") {
      headers.set("content-length", String((await Deno.stat(file.path)).size));
      return new Response(null, { status: 200, headers });
    }
    const handle = await Deno.open(file.path, { read: true });
    try {
      headers.set("content-length", String((await handle.stat()).size));
    } catch (error) {
      handle.close();
      throw error;
    }
    // The stream closes the file when it ends or the client goes away.
    return new Response(handle.readable, { status: 200, headers });
  }

  /** The real path of `path` when it exists and lies under the root, else `undefined`. */
  async #inside(path: string): Promise<string | undefined> {
    const real = await Deno.realPath(path);
    return real === this.root || real.startsWith(this.#prefix) ? real : undefined;
  }
}
