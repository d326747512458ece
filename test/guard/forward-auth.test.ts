/** ForwardAuthGuard against a real auth service: pass and copy, relay, and 503 on failure. */
import { afterAll, describe, expect, test } from "bun:test";
import { ForwardAuthGuard, MAX_BODY } from "../../src/guard/forward-auth.ts";
import type { GuardRequest } from "../../src/guard/guard.ts";
import { startAuthService } from "./auth-service.ts";

const svc = startAuthService();
afterAll(() => svc.stop());

const guard = (over: Partial<ConstructorParameters<typeof ForwardAuthGuard>[0]> = {}) =>
  new ForwardAuthGuard({ url: svc.url, copyHeaders: ["x-user"], headers: ["authorization", "cookie"], timeoutMs: 2000, ...over });
const req = (fields: Record<string, string>): GuardRequest => ({ method: "POST", target: "/app/x?y=1", headers: new Headers({ host: "app.example.com", ...fields }), clientIp: "10.1.2.3" });

describe("ForwardAuthGuard", () => {
  test("2xx: passes, the named field copied in; the service gets the method, URI, host, client and chosen fields only", async () => {
    const r = req({ authorization: "Bearer alice", cookie: "s=1", "x-secret": "no", "x-forwarded-proto": "https" });
    expect(await guard().check(r)).toBeUndefined();
    expect(r.headers.get("x-user")).toBe("alice");
    expect(r.headers.get("x-not-copied")).toBeNull();
    const seen = svc.seen.at(-1)!;
    expect(seen.get("x-forwarded-method")).toBe("POST");
    expect(seen.get("x-forwarded-uri")).toBe("/app/x?y=1");
    expect(seen.get("x-forwarded-host")).toBe("app.example.com");
    expect(seen.get("x-forwarded-for")).toBe("10.1.2.3");
    expect(seen.get("x-forwarded-proto")).toBe("https");
    expect(seen.get("authorization")).toBe("Bearer alice");
    expect(seen.get("cookie")).toBe("s=1");
    expect(seen.get("x-secret")).toBeNull();
  });

  test("2xx without a named field: the client's own is removed", async () => {
    const r = req({ authorization: "Bearer anon", "x-user": "admin" });
    expect(await guard().check(r)).toBeUndefined();
    expect(r.headers.get("x-user")).toBeNull();
  });

  test("any other answer goes to the client as it is: status, fields, body", async () => {
    const login = await guard().check(req({ authorization: "Bearer login" }));
    expect(login?.answer.status).toBe(302);
    expect(login?.answer.headers.location).toBe("/login");
    expect(login?.answer.headers["set-cookie"]).toBe("next=/app; Path=/");
    expect(login?.answer.body).toBe("<a href=/login>log in</a>");
    expect(login?.code).toBe("SY_AUTH_REQUIRED");
    const denied = await guard().check(req({}));
    expect(denied?.answer.status).toBe(401);
    expect(denied?.answer.headers["www-authenticate"]).toBe('Custom realm="svc"');
    expect(denied?.answer.body).toBe("who are you?");
    expect(denied?.answer.headers["content-length"]).toBeUndefined();
  });

  test(`a refusal body over ${MAX_BODY} bytes, a timeout, or no service: 503 SY_AUTH_UNAVAILABLE, never a pass`, async () => {
    const big = await guard().check(req({ authorization: "Bearer big" }));
    expect(big?.code).toBe("SY_AUTH_UNAVAILABLE");
    expect(big?.answer.status).toBe(503);
    const slow = await guard({ timeoutMs: 100 }).check(req({ authorization: "Bearer slow" }));
    expect(slow?.code).toBe("SY_AUTH_UNAVAILABLE");
    expect(slow?.answer.body).toContain("did not answer within 100 ms");
    const port = (() => {
      const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const p = s.port;
      s.stop(true);
      return p;
    })();
    const gone = await guard({ url: `http://127.0.0.1:${port}/check` }).check(req({ authorization: "Bearer alice" }));
    expect(gone?.code).toBe("SY_AUTH_UNAVAILABLE");
    expect(gone?.answer.body).toContain("cannot be reached");
  });
});
