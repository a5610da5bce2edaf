// Types for the parts of autocannon 8 that the benchmark uses; the package ships none.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  namespace autocannon {
    type Context = Record<string, unknown>;

    interface Request {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string;
      /** Called before each request on a connection; the returned request is sent. */
      setupRequest?: (request: Request, context: Context) => Request;
      /** Called with each response; `context` is the one its `setupRequest` received. */
      onResponse?: (status: number, body: string, context: Context) => void;
    }

    interface Options {
      url: string;
      connections?: number;
      /** Seconds; ignored when `amount` is set. */
      duration?: number;
      /** Total requests, split evenly between the connections. */
      amount?: number;
      /** Seconds before a request counts as timed out. */
      timeout?: number;
      requests?: Request[];
    }

    interface Result {
      /** Seconds from start to finish. */
      duration: number;
      errors: number;
      timeouts: number;
      non2xx: number;
      statusCodeStats: Record<string, { count: number }>;
    }

    interface Instance extends EventEmitter, PromiseLike<Result> {
      stop(): void;
      /** Emitted for each response, with its latency in milliseconds. */
      on(
        event: 'response',
        listener: (client: unknown, status: number, bytes: number, latencyMs: number) => void,
      ): this;
    }
  }

  function autocannon(options: autocannon.Options): autocannon.Instance;
  export = autocannon;
}
