import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`Invalid configuration: ${error.message}`);
    process.exit(2);
  }

  const app = await buildApp(config);
  const { databaseKind } = app.speedgate;

  if (databaseKind === 'pglite') {
    app.log.warn(
      { database: 'pglite', dataDir: config.dataDir },
      'using the embedded PGlite database: fine for trying Speedgate, but slower and larger than PostgreSQL; set DATABASE_URL in production',
    );
  } else {
    app.log.info({ database: 'postgresql' }, 'using PostgreSQL');
  }
  if (config.dcrEnabled && config.production) app.log.warn('dynamic client registration is open (DCR_ENABLED=true)');

  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });

  await app.listen({ port: config.port, host: config.host });
  app.log.info({ issuer: config.issuer }, 'Speedgate is ready');
}

await main();
