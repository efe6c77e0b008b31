/**
 * The open-file limit: which soft limits are tried, how failures are reported (fake system
 * calls), and the real FFI path in a subprocess started under `ulimit -Sn 256`.
 */
import {
  type FileLimit,
  type FileLimitSyscalls,
  fileLimitTargets,
  raiseFileLimit,
  readFileLimit,
  readProcFileLimit,
} from "../../lib/process/fd_limit.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { REPO_ROOT } from "../support/subprocess.ts";

/** Fake system calls over a mutable limit; `maxSoft` is the highest soft limit `set` accepts. */
function fakeSyscalls(
  start: FileLimit,
  options: { maxSoft?: number; failGet?: boolean } = {},
): { open: () => FileLimitSyscalls; limit: () => FileLimit; sets: number[]; closes: number } {
  let limit = start;
  const state = { sets: [] as number[], closes: 0 };
  return {
    open: () => ({
      getLimit: () => {
        if (options.failGet === true) throw new Error("getrlimit(RLIMIT_NOFILE) failed");
        return limit;
      },
      setLimit: (next) => {
        state.sets.push(next.soft);
        if (next.soft > (options.maxSoft ?? Number.POSITIVE_INFINITY)) {
          throw new Error(`setrlimit(RLIMIT_NOFILE) refused soft limit ${next.soft}`);
        }
        limit = next;
      },
      [Symbol.dispose]: () => {
        state.closes++;
      },
    }),
    limit: () => limit,
    get sets() {
      return state.sets;
    },
    get closes() {
      return state.closes;
    },
  };
}

Deno.test("fileLimitTargets() tries the hard limit, then OPEN_MAX below it", () => {
  assertEquals(fileLimitTargets({ soft: 256, hard: 65536 }), [65536, 10240]);
  assertEquals(fileLimitTargets({ soft: 256, hard: 4096 }), [4096]);
  assertEquals(fileLimitTargets({ soft: 256, hard: 10240 }), [10240]);
  assertEquals(fileLimitTargets({ soft: 20000, hard: 65536 }), [65536]);
});

Deno.test("fileLimitTargets() is empty when the soft limit is already at the hard limit", () => {
  assertEquals(fileLimitTargets({ soft: 4096, hard: 4096 }), []);
  assertEquals(fileLimitTargets({ soft: 256, hard: 256 }), []);
  const unlimited = Number.POSITIVE_INFINITY;
  assertEquals(fileLimitTargets({ soft: unlimited, hard: unlimited }), []);
});

Deno.test("fileLimitTargets() caps an unlimited hard limit at Linux's nr_open default", () => {
  assertEquals(fileLimitTargets({ soft: 1024, hard: Number.POSITIVE_INFINITY }), [
    1_048_576,
    10240,
  ]);
});

Deno.test("raiseFileLimit() raises the soft limit to the hard limit", () => {
  const fake = fakeSyscalls({ soft: 256, hard: 4096 });
  assertEquals(raiseFileLimit({ open: fake.open }), {
    raised: true,
    soft: 4096,
    hard: 4096,
    previousSoft: 256,
  });
  assertEquals(fake.limit(), { soft: 4096, hard: 4096 });
  assertEquals(fake.closes, 1);
});

Deno.test("raiseFileLimit() falls back to OPEN_MAX when the hard limit is refused", () => {
  // macOS: hard unlimited, soft above kern.maxfilesperproc refused.
  const fake = fakeSyscalls({ soft: 256, hard: Number.POSITIVE_INFINITY }, { maxSoft: 24576 });
  const outcome = raiseFileLimit({ open: fake.open });
  assertEquals(outcome, {
    raised: true,
    soft: 10240,
    hard: Number.POSITIVE_INFINITY,
    previousSoft: 256,
  });
  assertEquals(fake.sets, [1_048_576, 10240]);
});

Deno.test("raiseFileLimit() changes nothing when the soft limit is already at the hard limit", () => {
  const fake = fakeSyscalls({ soft: 20000, hard: 20000 });
  assertEquals(raiseFileLimit({ open: fake.open }), {
    raised: true,
    soft: 20000,
    hard: 20000,
    previousSoft: 20000,
  });
  assertEquals(fake.sets, []);
});

Deno.test("raiseFileLimit() opens no system calls when a peek shows nothing to raise", () => {
  let opens = 0;
  const outcome = raiseFileLimit({
    peek: () => ({ soft: 20000, hard: 20000 }),
    open: () => {
      opens++;
      throw new Error("not to be opened");
    },
  });
  assertEquals(outcome, { raised: true, soft: 20000, hard: 20000, previousSoft: 20000 });
  assertEquals(opens, 0);
});

Deno.test("raiseFileLimit() raises through the system calls when a peek shows a lower soft limit", () => {
  const fake = fakeSyscalls({ soft: 256, hard: 4096 });
  const outcome = raiseFileLimit({ peek: () => ({ soft: 256, hard: 4096 }), open: fake.open });
  assertEquals(outcome, { raised: true, soft: 4096, hard: 4096, previousSoft: 256 });
});

Deno.test("readProcFileLimit() reads Linux's /proc/self/limits", () => {
  const text = "Limit                     Soft Limit           Hard Limit           Units     \n" +
    "Max cpu time              unlimited            unlimited            seconds   \n" +
    "Max open files            1024                 524288               files     \n";
  assertEquals(readProcFileLimit(text), { soft: 1024, hard: 524288 });
  assertEquals(readProcFileLimit("Max open files  unlimited  unlimited  files"), {
    soft: Number.POSITIVE_INFINITY,
    hard: Number.POSITIVE_INFINITY,
  });
  assertEquals(readProcFileLimit("no such line"), undefined);
  if (Deno.build.os === "linux") {
    // Tests beside this one in the same process lower the limit and use up descriptors (the
    // open can fail): compare only a reading the limit did not change around.
    const fromProc = () => {
      try {
        return readProcFileLimit(Deno.readTextFileSync("/proc/self/limits"));
      } catch {
        return undefined;
      }
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = fromProc();
      const read = readFileLimit();
      const after = fromProc();
      if (before === undefined || !read.ok || JSON.stringify(before) !== JSON.stringify(after)) {
        continue;
      }
      assertEquals(before, { soft: read.soft, hard: read.hard });
      break;
    }
  }
});

Deno.test("raiseFileLimit() reports every refusal and the limit left in force", () => {
  const fake = fakeSyscalls({ soft: 256, hard: 65536 }, { maxSoft: 1000 });
  assertEquals(raiseFileLimit({ open: fake.open }), {
    raised: false,
    soft: 256,
    hard: 65536,
    reason: "setrlimit(RLIMIT_NOFILE) refused soft limit 65536; " +
      "setrlimit(RLIMIT_NOFILE) refused soft limit 10240",
  });
  assertEquals(fake.closes, 1);
});

Deno.test("raiseFileLimit() and readFileLimit() report unavailable system calls without throwing", () => {
  const open = (): FileLimitSyscalls => {
    throw new Error("Cannot read or raise the open file limit without --allow-ffi");
  };
  assertEquals(raiseFileLimit({ open }), {
    raised: false,
    soft: undefined,
    hard: undefined,
    reason: "Cannot read or raise the open file limit without --allow-ffi",
  });
  assertEquals(readFileLimit({ open }), {
    ok: false,
    reason: "Cannot read or raise the open file limit without --allow-ffi",
  });
  const failing = fakeSyscalls({ soft: 1, hard: 2 }, { failGet: true });
  assertEquals(raiseFileLimit({ open: failing.open }), {
    raised: false,
    soft: undefined,
    hard: undefined,
    reason: "getrlimit(RLIMIT_NOFILE) failed",
  });
  assertEquals(failing.closes, 1);
});

Deno.test("readFileLimit() reads through the system calls and closes them", () => {
  const fake = fakeSyscalls({ soft: 1024, hard: 4096 });
  assertEquals(readFileLimit({ open: fake.open }), { ok: true, soft: 1024, hard: 4096 });
  assertEquals(fake.closes, 1);
});

// --- The real thing, in a subprocess started with a soft limit of 256. ---

const SOFT_START = 256;
const isUnix = Deno.build.os === "linux" || Deno.build.os === "darwin";

/** The hard limit this test process runs with, as a shell reports it ("unlimited" or a number). */
async function shellHardLimit(): Promise<string> {
  const output = await new Deno.Command("sh", { args: ["-c", "ulimit -Hn"], stdin: "null" })
    .output();
  return new TextDecoder().decode(output.stdout).trim();
}

const hardLimit = isUnix ? await shellHardLimit() : "";
const ignoreReason = !isUnix
  ? `no RLIMIT_NOFILE on ${Deno.build.os}`
  : hardLimit !== "unlimited" && Number(hardLimit) <= SOFT_START
  ? `the hard open file limit is ${hardLimit}, so there is nothing to raise to`
  : undefined;
if (ignoreReason !== undefined) {
  // deno-lint-ignore no-console
  console.warn(`fd_limit_test: subprocess tests skipped: ${ignoreReason}`);
}

/**
 * A script that lowers its own soft limit back to 256 (`deno run` raises it before any script
 * runs), calls `raiseFileLimit()`, and asks a child shell, which inherits the limit, what it got.
 */
const SCRIPT = `
import { openLibcFileLimit, raiseFileLimit, readFileLimit } from ${
  JSON.stringify(new URL("lib/process/fd_limit.ts", REPO_ROOT).href)
};
const atStart = readFileLimit();
if (atStart.ok) {
  using syscalls = openLibcFileLimit();
  syscalls.setLimit({ soft: ${SOFT_START}, hard: atStart.hard });
}
const lowered = readFileLimit();
const outcome = raiseFileLimit();
const shell = await new Deno.Command("sh", { args: ["-c", "ulimit -Sn"] }).output();
console.log(JSON.stringify({
  atStart, lowered, outcome, shellSoft: new TextDecoder().decode(shell.stdout).trim(),
}));
`;

/** Runs {@linkcode SCRIPT} under `ulimit -Sn 256` with the given permission flags. */
async function runUnderLowLimit(permissions: readonly string[]): Promise<Record<string, unknown>> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, SCRIPT);
    const output = await new Deno.Command("bash", {
      args: [
        "-c",
        `ulimit -Sn ${SOFT_START} && exec "$0" run --no-config ${permissions.join(" ")} "$1"`,
        Deno.execPath(),
        file,
      ],
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    assertEquals(output.code, 0, stderr);
    return JSON.parse(stdout);
  } finally {
    await Deno.remove(file);
  }
}

Deno.test({
  name: "raiseFileLimit() raises a soft limit of 256 to the hard limit through FFI",
  ignore: ignoreReason !== undefined,
  fn: async () => {
    const result = await runUnderLowLimit(["--allow-ffi", "--allow-run=sh"]);
    const hard = hardLimit === "unlimited" ? null : Number(hardLimit);
    // `deno run` itself raises the soft limit before the script runs (Deno's raise_fd_limit);
    // the script lowers it again so that raiseFileLimit() has the work to do.
    assertEquals(result.lowered, { ok: true, soft: SOFT_START, hard });
    const outcome = result.outcome as { raised: boolean; soft: number; previousSoft: number };
    assertEquals(outcome.raised, true, JSON.stringify(outcome));
    assertEquals(outcome.previousSoft, SOFT_START);
    assert(outcome.soft > SOFT_START, JSON.stringify(outcome));
    if (hard !== null) assertEquals(outcome.soft, hard);
    assertEquals(result.shellSoft, String(outcome.soft), "the raised limit is in force");
  },
});

Deno.test({
  name: "raiseFileLimit() without --allow-ffi says so and does not prompt",
  ignore: ignoreReason !== undefined,
  fn: async () => {
    const result = await runUnderLowLimit(["--allow-run=sh"]);
    const outcome = result.outcome as { raised: boolean; reason: string };
    assertEquals(outcome.raised, false);
    assertStringIncludes(outcome.reason, "--allow-ffi");
  },
});
