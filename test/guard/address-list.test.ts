/** allow and deny: CIDR lists against the client's address; deny wins; allow refuses the rest. */
import { describe, expect, test } from "bun:test";
import { AddressListGuard } from "../../src/guard/address-list.ts";
import type { GuardRequest } from "../../src/guard/guard.ts";

const req = (clientIp: string): GuardRequest => ({ method: "GET", target: "/", headers: new Headers(), clientIp });
const verdict = (g: AddressListGuard, ip: string) => g.check(req(ip))?.code;

describe("AddressListGuard", () => {
  test("allow lets its addresses through and refuses the rest with 403 SY_FORBIDDEN", () => {
    const g = new AddressListGuard({ allow: ["10.0.0.0/8", "2001:db8::/32"] });
    expect(verdict(g, "10.1.2.3")).toBeUndefined();
    expect(verdict(g, "::ffff:10.1.2.3")).toBeUndefined();
    expect(verdict(g, "2001:db8::1")).toBeUndefined();
    expect(verdict(g, "11.0.0.1")).toBe("SY_FORBIDDEN");
    expect(verdict(g, "2001:db9::1")).toBe("SY_FORBIDDEN");
    expect(g.check(req("11.0.0.1"))!.answer.status).toBe(403);
  });

  test("deny wins over allow", () => {
    const g = new AddressListGuard({ allow: ["10.0.0.0/8"], deny: ["10.9.0.0/16"] });
    expect(verdict(g, "10.1.0.1")).toBeUndefined();
    expect(verdict(g, "10.9.0.1")).toBe("SY_FORBIDDEN");
  });

  test("deny alone refuses its addresses only", () => {
    const g = new AddressListGuard({ deny: ["192.168.0.0/16"] });
    expect(verdict(g, "192.168.1.1")).toBe("SY_FORBIDDEN");
    expect(verdict(g, "8.8.8.8")).toBeUndefined();
  });

  test("an empty allow list refuses everyone; an address that does not parse is refused (fail closed)", () => {
    expect(verdict(new AddressListGuard({ allow: [] }), "127.0.0.1")).toBe("SY_FORBIDDEN");
    expect(verdict(new AddressListGuard({ allow: ["0.0.0.0/0"] }), "not-an-ip")).toBe("SY_FORBIDDEN");
    expect(verdict(new AddressListGuard({ deny: ["10.0.0.0/8"] }), "")).toBe("SY_FORBIDDEN");
  });

  test("wanted: no guard without a list", () => {
    expect(AddressListGuard.wanted({})).toBe(false);
    expect(AddressListGuard.wanted({ deny: [] })).toBe(false);
    expect(AddressListGuard.wanted({ allow: [] })).toBe(true);
  });
});
