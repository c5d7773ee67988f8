// Public library surface of notifyd.
export { NotifyClient, type NotifyClientOptions } from './client.js';
export { verifyWebhook } from './verify-webhook.js';
export { ErrorCodes, NotifyError, type ErrorCode, type ErrorData } from './core/errors.js';
export { validateNotification, type Notification } from './core/message.js';
export { parseSchedule, parseDuration, SCHEDULE_PRESETS } from './core/schedule.js';
export { loadConfig, parseConfig, type Config } from './core/config.js';
export type { OutcomeEvent } from './tier/outcome-events.js';
