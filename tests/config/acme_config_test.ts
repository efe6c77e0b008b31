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
    "--redirect-http",
    "0.0.0.0:80",
    "--state-dir",
    "/var/lib/denolb",
  ]);
  assertEquals(config.acme, {
    domains: ["example.com", "www.example.com"],
    directory: "https://127.0.0.1:14000/dir",
    email: "ops@example.com",
    caCert: "ca.pem",
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
    JSON.stringify({
      acme: { domains: ["a.example"] },
      stateDir: "state",
      tls: { redirectHttp: "0.0.0.0:80" },
    }),
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
  [
    ["--acme-domain", "a.example", "--state-dir", "s"],
    "Invalid --acme-domain: the HTTP-01 challenge is answered on --redirect-http, which the CA " +
    "must reach on port 80 (such as --redirect-http 0.0.0.0:80)",
  ],
  [
    [
      "--acme-domain",
      "a.example",
      "--state-dir",
      "s",
      "--redirect-http",
      "0.0.0.0:80",
      "--tls-cert",
      "c.pem",
      "--tls-key",
      "k.pem",
    ],
    "Invalid --acme-domain: the proxy port serves either the --tls-cert files or the ACME " +
    "certificate; drop --tls-cert/--tls-key, or --acme-domain",
  ],
  [
    ["--redirect-http", "0.0.0.0:80"],
    'Invalid --redirect-http "0.0.0.0:80": redirecting to https needs --tls-cert and --tls-key, ' +
    "or --acme-domain",
  ],
  [
    ["--acme-https", "0.0.0.0:443", "--acme-domain", "a.example", "--state-dir", "s"],
    'Unknown flag "--acme-https" for lb: it was removed; with --acme-domain the proxy port ' +
    "(--port) itself serves HTTPS with the ACME certificate, and --redirect-http answers the " +
    "challenge",
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
