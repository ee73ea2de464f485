#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// Most commands last a second or two. At V8's default budget its optimizing compiler started on
// dozens of async functions that then ran a few more times: about 0.3 CPU-seconds of a 1.7 s
// restore on 2 cores. Sixteen times the budget leaves it to code that stays hot, which large
// backups and restores still reach early. The archive daemon keeps the default: its per-segment
// code runs a few hundred times in a backlog, and waiting longer to optimize it cost CPU there.
// Set before the CLI's modules load, so that their functions start with it.
/** V8 11.3's (Node 20) default, in bytes of bytecode run before a function is considered for optimizing. */
const defaultInterruptBudget = 67584;
if (process.argv[2] !== 'archive-daemon') setFlagsFromString(`--interrupt-budget=${16 * defaultInterruptBudget}`);
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv);
