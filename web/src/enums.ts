// Names people read for the schema's enums. Each table is a Record over the generated
// type, so a value added to the schema fails the build until it has a name here.
import type { BaseModelName, ModelSort, ModelType } from "./gql/graphql";

// The schema's base-model enum.
export type BaseModelValue = BaseModelName;

export const BASE_MODELS: Record<BaseModelValue, string> = {
  SD_1_5: "SD 1.5",
  SD_2_1: "SD 2.1",
  SDXL_1_0: "SDXL 1.0",
  PONY: "Pony",
  ILLUSTRIOUS: "Illustrious",
  SD_3_5: "SD 3.5",
  FLUX_1_D: "FLUX.1 [dev]",
  FLUX_1_S: "FLUX.1 [schnell]",
  OTHER: "Other",
};

export const MODEL_TYPES: Record<ModelType, string> = {
  LORA: "LoRA",
  LOCON: "LoCon",
  DORA: "DoRA",
};

export const SORTS: Record<ModelSort, string> = {
  NEWEST: "Newest",
  MOST_DOWNLOADED: "Most downloaded",
};

export function keys<K extends string>(table: Record<K, string>): K[] {
  return Object.keys(table) as K[];
}
