/**
 * `lb --acme-domain` as a whole process against Debian's `pebble`: the certificate is obtained
 * and served on `--acme-https` (with the task's permissions), and SIGTERM still exits at once
 * although the renewal loop waits for hours.
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { curlHttps, hasPebble, startPebble } from "../support/pebble.ts";
import { startServer, unusedPort } from "../support/servers.ts";
import { startLbProcess } from "../support/subprocess.ts";

Deno.test({
  name: "lb --acme-domain gets a certificate from pebble, serves HTTPS with it, exits on SIGTERM",
  ignore: !hasPebble(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denolb-acme-cli-" });
    try {
      const port = unusedPort();
      await using pebble = await startPebble({ httpPort: port, domains: ["cli.test"], dir });
      await Deno.writeTextFile(`${dir}/root.pem`, await pebble.rootPem());
      await using backend = startServer(() => new Response("from the backend"));
      await using lb = startLbProcess([
        "--port",
        String(port),
        "--backend",
        backend.url.href,
        "--admin",
        "off",
        "--access-log",
        "off",
        "--acme-domain",
        "cli.test",
        "--acme-directory",
        pebble.directoryUrl,
        "--acme-ca-cert",
        pebble.tlsCaFile,
        "--state-dir",
        `${dir}/state`,
        "--acme-https",
        "127.0.0.1:0",
      ]);
      const [, httpsPort] = await lb.waitForLine(/HTTPS listening url=https:\/\/[\d.]+:(\d+)\//);
      assert(httpsPort !== undefined);
      assertStringIncludes(lb.output, "Certificate obtained");
      assertEquals(
        await curlHttps("cli.test", Number(httpsPort), `${dir}/root.pem`),
        "from the backend",
      );
      lb.child.kill("SIGTERM");
      const status = await lb.child.status;
      assertEquals(status.code, 0, lb.output);
      assertStringIncludes(lb.output, "Balancer stopped");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
