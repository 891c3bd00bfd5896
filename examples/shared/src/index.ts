export { type ExampleConfig, readConfig, type StoreKind } from './config.js';
export { type ExampleApp, main, runExample, type StartedServer } from './run.js';
export {
  badAccountMessage,
  DASHBOARD_PATH,
  loginPage,
  readAccount,
  SESSION_COOKIE,
} from './sign-in.js';
export { type OpenedStore, openStore } from './stores.js';
export { welcomeText } from './welcome.js';
