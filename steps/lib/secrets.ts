// The secrets a step program receives, by name, from the Command's secret environment.
import { StepError } from "./log";
import { SECRET_ENV } from "./spec";

/** Kong's database password (KONG_PG_PASSWORD); a clear error when the step was not given it. */
export function databasePassword(): string {
    const p = process.env[SECRET_ENV.password];
    if (p === undefined) throw new StepError(`${SECRET_ENV.password} is not set: the step needs Kong's database password`);
    return p;
}

/** kong.secretEnv's values, by name, from the step's secret environment; a clear error for a missing one. */
export function kongSecretEnv(names: string[]): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of names) {
        const v = process.env[name];
        if (v === undefined) throw new StepError(`${name} is not set: kong.secretEnv.${name} must reach the step as a secret environment variable`);
        env[name] = v;
    }
    return env;
}
