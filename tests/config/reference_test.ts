/**
 * The flag reference (`lib/config/REFERENCE.md`) and the `--help` texts come from the same tables:
 * the reference is regenerated and compared, and every flag of those tables appears in its
 * command's help and is one the command's parser knows.
 */
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { expectedReference, REFERENCE_PATH } from "../support/reference.ts";
import { REPO_ROOT } from "../support/subprocess.ts";
import { LB_FLAG_NAMES, LB_HELP } from "../../lib/config/config.ts";
import { settingEntries } from "../../lib/config/settings.ts";
import { LOADTEST_HELP } from "../../load/help.ts";
import { flagSynopsis, LOADTEST_FLAGS } from "../../load/flag_table.ts";
import { BOOLEAN_FLAGS, STRING_FLAGS } from "../../load/flags.ts";

Deno.test(`${REFERENCE_PATH} is what "deno task docs" writes from the flag tables`, async () => {
  const onDisk = await Deno.readTextFile(new URL(REFERENCE_PATH, REPO_ROOT));
  assertEquals(
    onDisk,
    await expectedReference(),
    `${REFERENCE_PATH} is out of date: run "deno task docs" and commit it`,
  );
});

Deno.test("lb --help lists every setting's flag, and the parser knows each one", () => {
  for (const { setting } of settingEntries()) {
    assertStringIncludes(LB_HELP, `--${setting.flag} ${setting.metavar}`);
    assertEquals(LB_FLAG_NAMES.includes(setting.flag), true, setting.flag);
  }
  assertStringIncludes(LB_HELP, "--websocket on|off");
});

Deno.test("loadtest --help lists every flag of the table, and the parser knows each one", () => {
  for (const flag of LOADTEST_FLAGS) {
    assertStringIncludes(LOADTEST_HELP, flagSynopsis(flag));
  }
  assertEquals(
    [...STRING_FLAGS, ...BOOLEAN_FLAGS].sort(),
    LOADTEST_FLAGS.map((flag) => flag.name).sort(),
  );
});
