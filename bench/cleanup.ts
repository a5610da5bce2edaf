/** Cleanup steps, run last added first, once, whether the run ends, fails or is interrupted. */
export class Cleanup {
  readonly #steps: { name: string; run: () => Promise<void> }[] = [];
  #running: Promise<void> | undefined;

  add(name: string, run: () => Promise<void>): void {
    this.#steps.push({ name, run });
  }

  /** Whether cleanup has begun, after which nothing new should start. */
  get started(): boolean {
    return this.#running !== undefined;
  }

  /** Runs every step and logs any that fails. Later calls return the same promise. */
  run(): Promise<void> {
    this.#running ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step.run();
        } catch (error) {
          console.error(`cleanup: ${step.name} failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.#running;
  }
}
