// Entry point of a tier worker process (forked by the master with Node cluster).
// SIGHUP held first, everything else loaded after: ESM reads and links a static import graph whole before it runs
// any of it, so a static import of the rest would leave the load exposed (early-hangup.ts).
import '../src/supervisor/early-hangup.js';

await import('../src/tier/main.js');
