import { authorizationCodeGrant } from './authorization-code.ts';
import { clientCredentialsGrant } from './client-credentials.ts';
import { deviceCodeGrant } from './device-code.ts';
import { refreshTokenGrant } from './refresh-token.ts';
import { tokenExchangeGrant } from './token-exchange.ts';
import type { GrantHandler } from './types.ts';

/** The token endpoint's grant handlers by their wire name. */
export const grantHandlers: ReadonlyMap<string, GrantHandler> = new Map(
  [authorizationCodeGrant, clientCredentialsGrant, deviceCodeGrant, refreshTokenGrant, tokenExchangeGrant].map((handler) => [handler.grantType, handler]),
);
