// The page's fetch: the gateways' HTTP API sends no CORS headers, so every
// call to a gateway goes through the page's own server (server.mjs), which
// forwards it to that same gateway. Uploads to the media store's signed
// URLs go through it too. The SDK is given this fetch and never knows.

/** The header with which the page server says nothing reached the upstream. */
export const UNREACHABLE_HEADER = "x-chatmesh-proxy";

/**
 * Where a request for `url` goes from a page served at `pageOrigin`:
 * - a gateway API call (`<origin>/v1/...` of another origin) to `/gw/<host:port>/v1/...`;
 * - any other cross-origin `PUT` (an upload URL) to `/_upload?url=<url>`;
 * - everything else unchanged.
 */
export function proxiedUrl(url: string, method: string, pageOrigin: string): string {
  let u: URL;
  try {
    u = new URL(url, pageOrigin);
  } catch {
    return url;
  }
  if (u.origin === pageOrigin) return url;
  if (u.protocol !== "http:" && u.protocol !== "https:") return url;
  if (u.pathname.startsWith("/v1/")) return `${pageOrigin}/gw/${encodeURIComponent(u.host)}${u.pathname}${u.search}`;
  if (method.toUpperCase() === "PUT") return `${pageOrigin}/_upload?url=${encodeURIComponent(u.toString())}`;
  return url;
}

function requestParts(input: RequestInfo | URL, init?: RequestInit): { url: string; method: string } {
  if (typeof input === "string") return { url: input, method: init?.method ?? "GET" };
  if (input instanceof URL) return { url: input.toString(), method: init?.method ?? "GET" };
  return { url: input.url, method: init?.method ?? input.method };
}

/**
 * A `fetch` that sends gateway and upload requests through the page's
 * server. When the server answers that the gateway could not be reached, it
 * throws the `TypeError` a direct request would have, so the SDK moves on
 * to another gateway just as it would without the proxy.
 */
export function proxiedFetch(pageOrigin: string, base: typeof fetch = globalThis.fetch.bind(globalThis)): typeof fetch {
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const { url, method } = requestParts(input, init);
    const target = proxiedUrl(url, method, pageOrigin);
    if (target === url) return base(input, init);
    const request = input instanceof Request ? new Request(target, input) : target;
    const response = await base(request, init);
    if (response.status === 502 && response.headers.get(UNREACHABLE_HEADER) === "unreachable") {
      await response.body?.cancel();
      throw new TypeError(`Failed to fetch ${url}: unreachable`);
    }
    return response;
  };
}
