#!/usr/bin/env node
// The `notifyd` command. SIGHUP held first (for `notifyd start`), the command loaded after: ESM reads and links a
// static import graph whole before it runs any of it, so a static import would leave that load exposed (early-hangup.ts).
import './supervisor/early-hangup.js';

await import('./cli/main.js');
