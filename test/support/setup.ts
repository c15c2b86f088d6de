import { blankDotenvInProcess } from "./child-env.js";

blankDotenvInProcess();
