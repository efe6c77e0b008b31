/**
 * `lb --acme-domain` as a whole process against Debian's `pebble`: the certificate is obtained
 * over the `--redirect-http` listener and served on the proxy port (with the task's
 * permissions), and SIGTERM still exits at once although the renewal loop waits for hours.
 *
 * @module
 */
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
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
      const redirectPort = unusedPort();
      await using pebble = await startPebble({
        httpPort: redirectPort,
        domains: ["cli.test"],
        dir,
      });
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
        "--redirect-http",
        `127.0.0.1:${redirectPort}`,
      ]);
      const [, httpsPort] = await lb.waitForLine(/Balancer listening url=https:\/\/[\d.]+:(\d+)\//);
      assertEquals(httpsPort, String(port));
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
