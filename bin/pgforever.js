#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

/** Node 20's (V8 11.3) default: bytes of bytecode run between the checks that may optimize a function. */
const defaultInterruptBudget = 67584;

// Most commands last a second or two. At V8 11.3's default budget its optimizing compiler started on
// dozens of async functions that then ran a few more times: about 0.3 CPU-seconds of a 1.7 s restore
// on 2 cores. Sixteen times the budget leaves it to code that stays hot, which large backups and
// restores still reach early. The archive daemon (src/cli/archive.ts) keeps the default: its
// per-segment code runs a few hundred times in a backlog, and waiting longer cost CPU there. Only on
// V8 11, where it was measured: later V8s decide by call counts and reject this flag. Set before the
// CLI's modules load, so that their functions start with it.
if (process.versions.v8.startsWith('11.') && process.argv[2] !== 'archive-daemon') {
  setFlagsFromString(`--interrupt-budget=${16 * defaultInterruptBudget}`);
}
// The CLI's modules and commander bundled into a few files (npm run build:cli): every command starts
// by loading them, about 60 files otherwise, and on a cold page cache each was a disk read before any
// work. pg, pino and the AWS SDK stay outside, loaded only by what uses them.
const { main } = await import('../dist/cli-bundle/main.js');

process.exitCode = await main(process.argv);
