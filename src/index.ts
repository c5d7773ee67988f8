// Public library surface of notifyd.
export { NotifyClient, type NotifyClientOptions } from './client.js';
export { verifyWebhook } from './verify-webhook.js';
export { ErrorCodes, NotifyError, type ErrorCode, type ErrorData } from './errors.js';
export { validateNotification, type Notification } from './message.js';
export { parseSchedule, parseDuration, SCHEDULE_PRESETS } from './schedule.js';
export { loadConfig, parseConfig, type Config } from './config.js';
export type { OutcomeEvent } from './tier-worker.js';
