/**
 * A stand-alone load worker module (tests start workers from it; the binary uses `main.ts`).
 *
 * @module
 */
import { runLoadWorker } from "./worker.ts";

runLoadWorker(self);
