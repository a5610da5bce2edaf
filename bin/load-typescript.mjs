// Lets Node.js run the TypeScript sources through tsx, so the commands need no build step.
import { register } from 'tsx/esm/api';

register();
