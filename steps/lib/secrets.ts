// The secrets a step program receives, by name, from the Command's secret environment.
import { StepError } from "./log";
import { SECRET_ENV } from "./spec";

/** Kong's database password (KONG_PG_PASSWORD); a clear error when the step was not given it. */
export function databasePassword(): string {
    const p = process.env[SECRET_ENV.password];
    if (p === undefined) throw new StepError(`${SECRET_ENV.password} is not set: the step needs Kong's database password`);
    return p;
}
