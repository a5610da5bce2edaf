import { API_OPTIONS_HELP, chooseTokenSource, parseApiArgs } from './api-command.ts';
import { getJson } from './api.ts';
import { CliError, printable } from './errors.ts';
import { asObject } from './http.ts';

/** A member of a team, as `GET /api/v1/teams/` lists it. */
export interface TeamMember {
  id: string;
  name: string;
  email: string;
  role: string;
}

/** A team of the user, with all of its members. */
export interface Team {
  id: string;
  name: string;
  members: TeamMember[];
}

/** The path of the user's teams. The token needs the read:teams scope. */
export const TEAMS_PATH = '/api/v1/teams/';

export const TEAMS_HELP = `Usage: speedgate-cli teams [--json] [--token TOKEN --server URL]

Prints each team that the user belongs to, with its members' names, email
addresses and roles, from GET /api/v1/teams/. The token needs the read:teams
scope.

${API_OPTIONS_HELP}`;

const INVALID_RESPONSE = 'The teams response is not a list of teams with members';

function isStringRecord(value: unknown, fields: string[]): value is Record<string, string> {
  const record = asObject(value);
  return fields.every((field) => typeof record[field] === 'string');
}

function parseMember(value: unknown): TeamMember {
  if (!isStringRecord(value, ['id', 'name', 'email', 'role'])) throw new CliError(INVALID_RESPONSE);
  return { id: value.id, name: value.name, email: value.email, role: value.role };
}

function parseTeam(value: unknown): Team {
  const { id, name, members } = asObject(value);
  if (typeof id !== 'string' || typeof name !== 'string' || !Array.isArray(members)) {
    throw new CliError(INVALID_RESPONSE);
  }
  return { id, name, members: members.map(parseMember) };
}

/** Checks that a `GET /api/v1/teams/` body has the fields the CLI prints. */
export function parseTeams(body: unknown): Team[] {
  const { teams } = asObject(body);
  if (!Array.isArray(teams)) throw new CliError(INVALID_RESPONSE);
  return teams.map(parseTeam);
}

function printTeams(teams: Team[]): void {
  if (teams.length === 0) {
    console.log('You are not a member of any team.');
    return;
  }

  teams.forEach((team, index) => {
    if (index > 0) console.log('');
    console.log(`${printable(team.name)} (id ${printable(team.id)})`);
    for (const member of team.members) {
      const person = `${printable(member.name)} <${printable(member.email)}>`;
      console.log(`  ${person}, ${printable(member.role)}`);
    }
  });
}

/** Runs `teams`: prints the user's teams and their members. */
export async function runTeams(args: string[]): Promise<void> {
  const values = parseApiArgs('teams', args);
  if (values.help) {
    console.log(TEAMS_HELP);
    return;
  }

  const body = await getJson(chooseTokenSource(values), TEAMS_PATH);
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return;
  }
  printTeams(parseTeams(body));
}
