/**
 * The state directory's certificate store: modes, what `load` accepts, and the order lock.
 *
 * @module
 */
import { CertificateStore } from "../../lib/control/certificate_store.ts";
import { assert, assertEquals } from "../support/assert.ts";

/** A self-signed certificate for `names` (openssl), and its key. */
async function makeCertificate(dir: string, names: readonly string[]) {
  const output = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "90",
      "-subj",
      `/CN=${names[0]}`,
      "-addext",
      `subjectAltName=${names.map((name) => `DNS:${name}`).join(",")}`,
      "-keyout",
      `${dir}/made.key`,
      "-out",
      `${dir}/made.crt`,
    ],
    stdin: "null",
    stderr: "null",
  }).output();
  assert(output.success, "openssl made the certificate");
  return {
    certPem: await Deno.readTextFile(`${dir}/made.crt`),
    keyPem: await Deno.readTextFile(`${dir}/made.key`),
  };
}

const mode = (path: string) => ((Deno.statSync(path).mode ?? 0) & 0o777).toString(8);

Deno.test("CertificateStore keeps an existing state directory's mode and makes acme/ 0700", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.chmod(dir, 0o755);
    const store = await CertificateStore.open(dir);
    assertEquals(mode(dir), "755");
    assertEquals(mode(`${dir}/acme`), "700");
    await store.writeAccountKey("https://ca.example/dir", "KEY");
    assertEquals(mode(`${dir}/acme/accounts/ca.example.key`), "600");
    assertEquals(await store.readAccountKey("https://ca.example/dir"), "KEY");
    assertEquals(await store.readAccountKey("https://other.example/dir"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CertificateStore loads a saved certificate only when it names every domain", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await CertificateStore.open(`${dir}/state`);
    assertEquals(mode(`${dir}/state`), "700");
    assertEquals(await store.load(["a.example"]), undefined);
    const pair = await makeCertificate(dir, ["a.example", "www.a.example"]);
    await store.save(["a.example", "www.a.example"], pair);
    const loaded = await store.load(["a.example", "www.a.example"]);
    assertEquals(loaded?.certPem, pair.certPem);
    assertEquals(loaded?.names, ["a.example", "www.a.example"]);
    const days = ((loaded?.notAfterMs ?? 0) - (loaded?.notBeforeMs ?? 0)) / 86_400_000;
    assertEquals(Math.round(days), 90);
    for (const file of ["cert.pem", "key.pem"]) {
      assertEquals(mode(`${dir}/state/acme/certificates/a.example/${file}`), "600");
    }
    // A domain list that grew needs a new certificate.
    assertEquals(await store.load(["a.example", "new.a.example"]), undefined);
    // A damaged file is no certificate, not a crash.
    await Deno.writeTextFile(`${dir}/state/acme/certificates/a.example/cert.pem`, "garbage");
    assertEquals(await store.load(["a.example"]), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CertificateStore's order lock is held once until released", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await CertificateStore.open(dir);
    const second = await CertificateStore.open(dir);
    const lock = await first.tryLock();
    assert(lock !== undefined);
    assertEquals(await second.tryLock(), undefined);
    lock.release();
    lock.release();
    const again = await second.tryLock();
    assert(again !== undefined);
    again.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
