/**
 * A self-signed certificate for a name that has none from the CA yet, so that its listener can
 * start and serve at once; clients see an untrusted certificate for that name until the order
 * completes. Its subject says what it is, which is also how the store tells it from an issued
 * one (a replica that finds a placeholder orders the name).
 */
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const PLACEHOLDER_ORG = "Switchyard ACME placeholder";

/** Key (PKCS#8 PEM) then certificate, as the store keeps a name. */
export async function placeholderPem(name: string): Promise<string> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString("hex").replace(/^[89a-f]/, "1"),
    name: `CN=${name}, O=${PLACEHOLDER_ORG}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 7 * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }])],
  });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n${cert.toString("pem")}\n`;
}
