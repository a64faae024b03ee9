// How this step program was started: by `node main.js` itself, or by a step runner's worker that
// was given it (steps/runner.ts). The canary samples start-up the way its steps start.
let viaRunner = false;

/** Called by a runner's worker before it runs its step. */
export function markRunByRunner(): void {
    viaRunner = true;
}

export function runByRunner(): boolean {
    return viaRunner;
}
