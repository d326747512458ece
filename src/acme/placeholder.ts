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
export function placeholderPem(name: string): Promise<string> {
  return selfSignedPem(`CN=${name}, O=${PLACEHOLDER_ORG}`, name, 7 * 86_400_000, []);
}

/**
 * A self-signed ECDSA P-256 certificate for `name` (its only subjectAltName), valid from a
 * minute ago for `lifetimeMs`: key (PKCS#8 PEM) then certificate. Key usage digitalSignature,
 * which BoringSSL requires of an ECDSA server certificate that states a key usage.
 */
export async function selfSignedPem(subject: string, name: string, lifetimeMs: number, extensions: x509.Extension[]): Promise<string> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString("hex").replace(/^[89a-f]/, "1"),
    name: subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + lifetimeMs),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true), new x509.SubjectAlternativeNameExtension([{ type: "dns", value: name }]), ...extensions],
  });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  return `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n${cert.toString("pem")}\n`;
}
