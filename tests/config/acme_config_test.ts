/**
 * The ACME settings as flags and as the config file: what they give, and each rejection's class
 * and message.
 *
 * @module
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { assertEquals, assertRejects } from "../support/assert.ts";

const noEnv = (_name: string): string | undefined => undefined;

function parse(args: readonly string[], file?: string) {
  return parseBalancerArgs(file === undefined ? args : [...args, "--config", "lb.json"], noEnv, {
    readTextFile: () => Promise.resolve(file ?? "{}"),
  });
}

Deno.test("ACME flags: repeated and comma-listed domains, lower-cased, once each", async () => {
  const config = await parse([
    "--acme-domain",
    "Example.COM,www.example.com",
    "--acme-domain",
    "example.com",
    "--acme-directory",
    "https://127.0.0.1:14000/dir",
    "--acme-email",
    "ops@example.com",
    "--acme-ca-cert",
    "ca.pem",
    "--acme-https",
    "0.0.0.0:443",
    "--state-dir",
    "/var/lib/denolb",
  ]);
  assertEquals(config.acme, {
    domains: ["example.com", "www.example.com"],
    directory: "https://127.0.0.1:14000/dir",
    email: "ops@example.com",
    caCert: "ca.pem",
    httpsListen: "0.0.0.0:443",
  });
  assertEquals(config.stateDir, "/var/lib/denolb");
});

Deno.test("ACME defaults: no domain, Let's Encrypt's production directory", async () => {
  const config = await parse([]);
  assertEquals(config.acme, {
    domains: [],
    directory: "https://acme-v02.api.letsencrypt.org/directory",
  });
  assertEquals(config.stateDir, undefined);
});

Deno.test("ACME in the config file", async () => {
  const config = await parse(
    [],
    JSON.stringify({ acme: { domains: ["a.example"] }, stateDir: "state" }),
  );
  assertEquals(config.acme.domains, ["a.example"]);
  assertEquals(config.stateDir, "state");
});

const REJECTIONS: ReadonlyArray<readonly [readonly string[], string]> = [
  [
    ["--acme-domain", "example.com"],
    "Invalid --acme-domain: ACME needs --state-dir, where the account key and the certificates " +
    "are kept across restarts",
  ],
  [
    ["--acme-domain", "*.example.com", "--state-dir", "s"],
    'Invalid --acme-domain "*.example.com": must be a DNS name such as example.com: letters, ' +
    "digits, hyphens and dots, no wildcard (the HTTP-01 challenge cannot prove one) and no IP " +
    "address",
  ],
  [
    ["--acme-domain", "a.example,10.0.0.1", "--state-dir", "s"],
    'Invalid --acme-domain "10.0.0.1": must be a DNS name such as example.com: letters, ' +
    "digits, hyphens and dots, no wildcard (the HTTP-01 challenge cannot prove one) and no IP " +
    "address",
  ],
  [
    ["--acme-directory", "http://ca.example/dir"],
    'Invalid --acme-directory "http://ca.example/dir": must be an https URL',
  ],
  [
    ["--acme-email", "ops"],
    'Invalid --acme-email "ops": must be an email address such as ops@example.com',
  ],
  [["--acme-email", "ops@example.com"], "Invalid --acme-email: it applies only with --acme-domain"],
  [["--acme-ca-cert", "ca.pem"], "Invalid --acme-ca-cert: it applies only with --acme-domain"],
  [["--acme-https", "0.0.0.0:443"], "Invalid --acme-https: it applies only with --acme-domain"],
  [
    ["--acme-https", "443", "--acme-domain", "a.example", "--state-dir", "s"],
    'Invalid --acme-https "443": must be host:port (such as 0.0.0.0:443; port 0 picks a free one)',
  ],
  [
    [
      "--port",
      "8080",
      "--acme-https",
      "0.0.0.0:8080",
      "--acme-domain",
      "a.example",
      "--state-dir",
      "s",
    ],
    'Invalid --acme-https "0.0.0.0:8080": it must not be the proxy port (8080), which answers ' +
    "plain HTTP and the ACME challenges",
  ],
];

for (const [args, message] of REJECTIONS) {
  Deno.test(`ACME flags reject ${args.join(" ")}`, async () => {
    const error = await assertRejects(() => parse(args), UsageError);
    assertEquals(error.message, message);
  });
}

Deno.test("ACME in the config file rejects a wildcard, naming it", async () => {
  const error = await assertRejects(
    () => parse([], JSON.stringify({ acme: { domains: ["*.a.example"] }, stateDir: "s" })),
    UsageError,
  );
  assertEquals(
    error.message,
    'Invalid config "lb.json": acme.domains "*.a.example" must be a DNS name such as ' +
      "example.com: letters, digits, hyphens and dots, no wildcard (the HTTP-01 challenge " +
      "cannot prove one) and no IP address",
  );
});
