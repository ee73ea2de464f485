#!/usr/bin/env node
import { main } from '../dist/quickstart/main.js';

process.exitCode = await main();
