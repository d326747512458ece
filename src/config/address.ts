/**
 * Backend addresses. HTTP mode takes http(s) URLs with a host; TCP mode takes tcp://host:port
 * or host:port. The error text completes "expected ...".
 */
export function parseBackendAddress(text: string, mode: "http" | "tcp"): URL {
  if (mode === "tcp") {
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `tcp://${text}`;
    let url: URL;
    try {
      url = new URL(withScheme);
    } catch {
      throw new Error(`a TCP address like "tcp://127.0.0.1:6379" or "127.0.0.1:6379"`);
    }
    if (url.protocol !== "tcp:" || !url.hostname || !url.port || (url.pathname && url.pathname !== "/")) {
      throw new Error(`a TCP address like "tcp://127.0.0.1:6379" or "127.0.0.1:6379" (with a port)`);
    }
    return url;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`an http(s) URL with a host, like "http://127.0.0.1:5001"`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw new Error(`an http(s) URL with a host, like "http://127.0.0.1:5001"`);
  }
  if (url.search || url.hash || url.username) {
    throw new Error(`a URL without query, fragment or credentials`);
  }
  return url;
}
