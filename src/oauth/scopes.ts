import type { ScopeDefinition, ScopeRisk } from '../config.ts';
import { OAuthError } from './errors.ts';

export interface Scope extends ScopeDefinition {
  risk: ScopeRisk;
  /** Reserved scopes are never granted to third-party applications. */
  reserved: boolean;
}

const BUILT_IN_SCOPES: readonly Scope[] = [
  { name: 'read:profile', description: 'Read your name and email address', risk: 'read', reserved: false },
  { name: 'write:profile', description: 'Change your name', risk: 'write', reserved: false },
  { name: 'read:teams', description: 'See your teams and their members', risk: 'read', reserved: false },
  { name: 'write:teams', description: 'Invite people to your teams', risk: 'write', reserved: false },
  { name: 'read:products', description: 'Read the product catalogue', risk: 'read', reserved: false },
  { name: 'admin', description: 'Administer this Speedgate server', risk: 'admin', reserved: true },
];

/** Registry of the scopes this server grants: the built-in ones and those the operator adds. */
export class ScopeRegistry {
  readonly #scopes = new Map<string, Scope>();

  constructor(extra: readonly ScopeDefinition[] = []) {
    for (const scope of BUILT_IN_SCOPES) this.#scopes.set(scope.name, scope);

    for (const scope of extra) {
      if (this.#scopes.has(scope.name)) {
        throw new Error(`Scope ${scope.name} is already defined; remove it from SCOPES_FILE`);
      }
      const risk = scope.risk ?? (scope.name.startsWith('write:') ? 'write' : 'read');
      this.#scopes.set(scope.name, { ...scope, risk, reserved: false });
    }
  }

  get(name: string): Scope | undefined {
    return this.#scopes.get(name);
  }

  all(): Scope[] {
    return [...this.#scopes.values()];
  }

  /** Names a client may be granted: every scope except the reserved ones. */
  grantableNames(): string[] {
    return this.all()
      .filter((scope) => !scope.reserved)
      .map((scope) => scope.name);
  }

  /**
   * Parses a space-delimited `scope` parameter (RFC 6749 section 3.3) into
   * unique names, in registry order. Commas are accepted as separators too,
   * as some platforms send them, and no registered name contains one. Throws
   * invalid_scope naming each unknown or reserved scope.
   */
  parse(scope: string): string[] {
    const requested = new Set(scope.split(/[ ,]+/).filter((name) => name !== ''));
    const unknown = [...requested].filter((name) => !this.#scopes.has(name));
    if (unknown.length > 0) {
      throw new OAuthError('invalid_scope', `Unknown scope: ${unknown.join(', ')}`);
    }

    const reserved = [...requested].filter((name) => this.#scopes.get(name)?.reserved);
    if (reserved.length > 0) {
      throw new OAuthError('invalid_scope', `The scope ${reserved.join(', ')} cannot be granted to applications`);
    }

    return this.all()
      .map((entry) => entry.name)
      .filter((name) => requested.has(name));
  }
}

/** Returns whether every scope in `needed` is in the space-delimited `granted`. */
export function hasScopes(granted: string, needed: readonly string[]): boolean {
  const set = new Set(granted.split(' '));
  return needed.every((name) => set.has(name));
}
