import DevifCore
